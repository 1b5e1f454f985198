"""The executor process: imports tasks by name and runs them, one at a time.

It is the only ASOQ process that runs user code. It reads task frames from its worker, runs
each, and writes back one ``DONE`` frame per task, in order: the worker infers that the next
task started when the previous one is reported, so a run needs no "started" message. It dies
with its worker (``PR_SET_PDEATHSIG``) and exits when the worker closes its pipe.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from . import client, protocol, runtime
from .protocol import DONE_HEAD, Failure, FrameReader
from .result import UntrackedHandle

if TYPE_CHECKING:
    from .task import Task

# Outcomes of tasks that ran back to back are written together, but never held longer than
# this: the worker times a task from the moment the previous outcome arrives.
_FLUSH_AFTER = 0.001

_resolved: dict[bytes, Task[..., Any]] = {}
# Context managers that setup hooks asked to wrap every task in (Django's connection care).
_around_task: list[Callable[[], AbstractContextManager[None]]] = []


class TaskChannel:
    """How a running task enqueues more tasks: frames on this executor's pipe to its worker.

    The worker queues them with the others; their outcomes are logged there, not reported back
    (the handle says so if waited for).
    """

    def __init__(self, outbox: int, token: str) -> None:
        self.outbox = outbox
        self.prefix = f"{token}-{os.getpid()}"
        self.lock = threading.Lock()  # a task's own threads may enqueue while DONE is written
        self._seq = itertools.count(1)

    def write(self, data: bytes) -> None:
        with self.lock:
            protocol.write_all(self.outbox, data)

    def submit(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        payload = client.pickle_arguments(task.name, args, kwargs)
        seq = next(self._seq)
        self.write(task._frame(seq, payload))
        return UntrackedHandle(task.name, self.prefix, seq)


def main(inbox: int, outbox: int, worker_pid: int) -> None:
    from .process import alive, die_with_parent

    die_with_parent()
    if not alive(worker_pid):
        return  # the worker died before the kernel could be told to kill us with it
    reader = FrameReader()
    config = _read_config(inbox, reader)
    sys.path[:] = config["sys_path"]
    # Log records of task code carry the process name: say which process this is.
    import multiprocessing

    multiprocessing.current_process().name = "asoq-executor"
    channel = TaskChannel(outbox, config["token"])
    runtime.mark_executor(channel)
    for hook in config["setup"]:
        around = _import(hook)()
        if around is not None:
            _around_task.append(around)
    channel.write(protocol.PREFIX.pack(1, protocol.READY))
    while data := os.read(inbox, protocol.READ_SIZE):
        _run_frames(reader.feed(data), channel)


def _read_config(inbox: int, reader: FrameReader) -> dict[str, Any]:
    frames = protocol.read_first(inbox, reader)
    if not frames:
        raise SystemExit(0)  # the worker died before it could say anything
    kind, frame = frames[0]
    assert kind == protocol.CONFIG and len(frames) == 1, "the worker sends its config alone"
    config: dict[str, Any] = protocol.read_pickled(frame)
    return config


def _run_frames(frames: list[tuple[int, bytes]], channel: TaskChannel) -> None:
    outcomes: list[bytes] = []
    flushed_at = time.monotonic()
    for kind, frame in frames:
        if kind != protocol.TASK:
            continue
        outcomes.append(run(frame))
        now = time.monotonic()
        if now - flushed_at > _FLUSH_AFTER:
            channel.write(b"".join(outcomes))
            outcomes.clear()
            flushed_at = now
    if outcomes:
        channel.write(b"".join(outcomes))


def run(frame: bytes) -> bytes:
    """Run one task frame and return its ``DONE`` frame."""
    head = protocol.read_task(frame)
    started = time.perf_counter()
    try:
        task = _resolve(head.name)
        args, kwargs = pickle.loads(memoryview(frame)[head.payload_offset :])
        if _around_task:
            with contextlib.ExitStack() as stack:
                for around in _around_task:
                    stack.enter_context(around())
                value = task.run(args, kwargs)
        else:
            value = task.run(args, kwargs)
        payload = b"" if value is None else _pickle_result(task.name, value)
        ok = True
    # A task's SystemExit or KeyboardInterrupt is that task's failure, not the executor's.
    except BaseException as error:
        payload = _describe(error).encode()
        ok = False
    duration = time.perf_counter() - started
    size = DONE_HEAD.size - 4 + len(payload)
    return DONE_HEAD.pack(size, protocol.DONE, head.seq, ok, duration) + payload


def _resolve(encoded: bytes) -> Task[..., Any]:
    task = _resolved.get(encoded)
    if task is None:
        from .task import Task

        name = encoded.decode()
        target = _import(name)
        if not isinstance(target, Task) or target.name != name:
            raise LookupError(f"{name} is not the asoq task of that name (found {target!r})")
        task = _resolved[encoded] = target
    return task


def _import(name: str) -> Any:
    module_name, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _pickle_result(name: str, value: object) -> bytes:
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise TypeError(
            f"task {name!r} returned a {type(value).__qualname__}, which cannot be pickled: {error}"
        ) from error


def _describe(error: BaseException) -> Failure:
    kind = type(error)
    # Skip this module's own frame: the traceback starts in the task.
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    text = "".join(traceback.format_exception(kind, error, tb))
    try:
        blob = pickle.dumps(error, pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)  # a custom __init__ can pickle and still fail to unpickle
    except Exception:  # whatever pickle raises for it, the text still describes it
        blob = b""
    return Failure(
        "raised",
        f"{kind.__module__}.{kind.__qualname__}",
        f"raised {kind.__qualname__}: {error}",
        text,
        blob,
    )
