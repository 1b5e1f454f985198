"""The enqueuing process's link to one worker: its start, the hand-over, the outcomes.

``.delay()`` pickles the call in the caller (so a bad argument raises right there) and writes
one frame to the worker's pipe before it returns: once written, the task belongs to the OS and
then to the worker, so the caller may ``os._exit()`` at once. A daemon thread reads outcomes
and log records back. Which worker a process uses is :mod:`asoq.runtime`'s business.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import secrets
import select
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import logs, process, protocol
from .errors import QueueFull, SerializationError, WorkerError
from .options import WorkerOptions
from .protocol import FINISHED_HEAD, FrameReader
from .result import TaskHandle, lost

if TYPE_CHECKING:
    from .task import Task

logger = logging.getLogger("asoq")

# After the worker is asked to stop, it gets the drain time asked for plus this long to end
# its executors and exit before it is killed.
STOP_GRACE = 5.0
# The worker reads its pipe all the time (it runs no user code), so a pipe that stays full this
# long means a worker that is stopped or stuck: enqueuing then fails instead of hanging.
PIPE_FULL_TIMEOUT = 2.0
# Starting the worker is a fork+exec: it takes milliseconds, this is a bound for a sick machine.
SPAWN_TIMEOUT = 30.0


class _WorkerGone(Exception):
    """Raised inside the client when the worker's pipe is broken: the worker has died."""


class _PipeFull(Exception):
    """Raised inside the client when the worker has not read its pipe for a while."""


class Client:
    """One worker process and the tasks this process handed it that have not finished."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.pid = os.getpid()
        self.token = secrets.token_hex(4)
        self.pending: dict[int, TaskHandle[Any]] = {}
        self.alive = True
        self.stopping = False
        self._lost = 0  # tasks the worker took with it when it ended
        self._seq = itertools.count(1)
        self._write_lock = threading.Lock()
        self._idle = threading.Condition()
        self._process: subprocess.Popen[bytes] | None = None
        self._spawned = threading.Event()
        inbox_read, self.inbox = protocol.make_pipe()
        outbox_read, outbox_write = protocol.make_pipe()
        config = {
            "token": self.token,
            "sys_path": list(sys.path),
            "concurrency": options.concurrency,
            "drain_timeout": options.drain_timeout,
            "max_pending": options.max_pending,
            "python": options.python,
            "log_level": logger.getEffectiveLevel(),
            "setup": _setup_hooks(),
        }
        protocol.write_all(self.inbox, protocol.pickled_frame(protocol.CONFIG, config))
        os.set_blocking(self.inbox, False)  # see send(): a stuck worker must not block callers
        # The process itself is started by the reader thread: its fork+exec takes milliseconds,
        # which a request that starts the worker but enqueues nothing never waits for, and a
        # request that does enqueue overlaps with its own work until its first send().
        self._reader = threading.Thread(
            target=self._spawn_then_read,
            args=(inbox_read, outbox_write, outbox_read),
            name="asoq-outcomes",
            daemon=True,
        )
        self._reader.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The worker process, once started (this waits for the start if need be)."""
        if not self._spawned.wait(SPAWN_TIMEOUT) or self._process is None:
            raise WorkerError("the asoq worker could not be started (see the asoq log)")
        return self._process

    def _spawn_then_read(self, inbox_read: int, outbox_write: int, outbox_read: int) -> None:
        try:
            self._process = process.spawn(
                "worker", (inbox_read, outbox_write), (self.pid,), self.options.python
            )
        except OSError as error:
            logger.error("cannot start the asoq worker: %s", error)
        finally:
            os.close(inbox_read)
            os.close(outbox_write)
            self._spawned.set()
        if self._process is None:
            os.close(outbox_read)
            self._worker_gone()
            return
        logger.debug("asoq worker %d starting for process %d", self._process.pid, self.pid)
        self._read(outbox_read)

    def prepare(
        self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, TaskHandle[Any], bytes]:
        """Check and pickle one call and count it as pending; ``send`` its frame later."""
        pending = self.pending
        if len(pending) >= self.options.max_pending:
            raise QueueFull(
                f"task {task.name!r} not enqueued: {len(pending)} tasks are pending, the "
                f"max_pending bound of this process's worker"
            )
        payload = pickle_arguments(task.name, args, kwargs)
        seq = next(self._seq)
        handle: TaskHandle[Any] = TaskHandle(task.name, self.token, seq)
        pending[seq] = handle  # before the write: the outcome may come back before we return
        return seq, handle, task._frame(seq, payload)

    def send(self, frames: bytes) -> None:
        """Write frames to the worker's pipe; once this returns the OS holds them.

        One non-blocking write is the common case. If the pipe is full, wait at most
        ``PIPE_FULL_TIMEOUT`` for the worker to read, then raise ``_PipeFull`` with nothing
        written. Once part of the frames is in, the rest must follow (a cut frame would
        corrupt the stream), so a worker that stops reading then is killed.

        The first calls wait for the worker's process to exist: frames in a pipe that no other
        process holds would die with this one (a gunicorn worker recycled after a few
        requests, a caller that calls ``os._exit()`` next).
        """
        if not self._spawned.is_set() and (
            not self._spawned.wait(SPAWN_TIMEOUT) or self._process is None
        ):
            raise _WorkerGone
        with self._write_lock:
            try:
                written = os.write(self.inbox, frames)
            except BlockingIOError:
                written = 0
            except OSError as error:
                raise _WorkerGone from error
            if written < len(frames):
                self._write_rest(memoryview(frames)[written:], started=written > 0)

    def _write_rest(self, rest: memoryview, started: bool) -> None:
        deadline = time.monotonic() + PIPE_FULL_TIMEOUT
        while rest:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [self.inbox], [], remaining)[1]:
                if not started:
                    raise _PipeFull
                logger.error(
                    "asoq worker %d stopped reading in the middle of a frame; killing it",
                    self.process.pid,
                )
                self.process.kill()
                raise _WorkerGone
            try:
                rest = rest[os.write(self.inbox, rest) :]
            except BlockingIOError:
                continue
            except OSError as error:
                raise _WorkerGone from error
            started = True

    def submit(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        seq, handle, frame = self.prepare(task, args, kwargs)
        try:
            self.send(frame)
        except _WorkerGone:
            # The reader thread may have cleared pending already, counting this one lost.
            self.pending.pop(seq, None)
            raise
        except _PipeFull:
            self.pending.pop(seq, None)
            raise QueueFull(f"task {task.name!r} not enqueued: {self.pipe_full()}") from None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Task %s[%s] enqueued", task.name, handle.id)
        return handle

    def pipe_full(self) -> str:
        return (
            f"asoq worker {self.process.pid} has not read its pipe for {PIPE_FULL_TIMEOUT:g} s "
            f"(is it stopped?)"
        )

    def cancel(self, seqs: list[int], why: str) -> None:
        """Forget prepared calls that will never be sent, marking each handle lost."""
        for seq in seqs:
            handle = self.pending.pop(seq, None)
            if handle is not None:
                lost(handle, why)
        if not self.pending:
            with self._idle:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self.pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def stop(self, timeout: float) -> bool:
        """Let the worker run what it holds for up to ``timeout`` s, then end it."""
        self.stopping = True
        stop = protocol.STOP_FRAME
        # Gone or stuck: the wait below then ends in a kill, and the reader counts the loss.
        with contextlib.suppress(_WorkerGone, _PipeFull):
            self.send(stop.pack(stop.size - 4, protocol.STOP, timeout))
        clean = True
        try:
            self.process.wait(timeout + STOP_GRACE)
        except subprocess.TimeoutExpired:
            clean = False
            logger.error("asoq worker %d did not stop in time; killing it", self.process.pid)
            self.process.kill()
            self.process.wait()
        self._reader.join(STOP_GRACE)
        os.close(self.inbox)
        return clean and self.process.returncode == 0 and not self._lost

    def forget(self) -> None:
        """Drop a worker inherited through ``fork()``: it is the parent's, never ours to use."""
        with contextlib.suppress(OSError):
            os.close(self.inbox)

    def _read(self, fd: int) -> None:
        reader = FrameReader()
        pending = self.pending
        unpack_finished = FINISHED_HEAD.unpack_from
        finished_size = FINISHED_HEAD.size
        try:
            while data := os.read(fd, protocol.READ_SIZE):
                for kind, frame in reader.feed(data):
                    if kind == protocol.FINISHED:
                        _, _, seq, ok, attempts = unpack_finished(frame)
                        handle = pending.pop(seq, None)
                        if handle is not None:
                            handle._finish(ok, frame[finished_size:], attempts)
                    elif kind == protocol.STARTED:
                        _, _, seq, attempt = protocol.STARTED_FRAME.unpack_from(frame)
                        handle = pending.get(seq)
                        if handle is not None:
                            handle._started(attempt)
                    elif kind == protocol.RETRYING:
                        handle = pending.get(protocol.read_seq(frame))
                        if handle is not None:
                            handle._requeued()
                    elif kind == protocol.LOG:
                        logs.emit(protocol.read_pickled(frame))
                if not pending:
                    with self._idle:
                        self._idle.notify_all()
        except OSError:
            pass
        finally:
            os.close(fd)
            self._worker_gone()

    def _worker_gone(self) -> None:
        self.alive = False
        returncode = self._process.wait() if self._process else None
        handles = list(self.pending.values())
        self.pending.clear()
        self._lost = len(handles)
        if not self.stopping:
            logger.error(
                "asoq worker %s ended unexpectedly (exit status %s); %d task(s) it held are lost",
                self._process.pid if self._process else "(never started)",
                returncode,
                len(handles),
            )
        why = "the worker stopped before running it" if self.stopping else "the worker died"
        for handle in handles:
            logger.error("Task %s[%s] lost: %s", handle.task_name, handle.id, why)
            lost(handle, why)
        with self._idle:
            self._idle.notify_all()


def pickle_arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Pickle a call's arguments, or raise naming the task and the argument that cannot be."""
    try:
        return pickle.dumps((args, kwargs), pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        places = [(f"#{i}", value) for i, value in enumerate(args)] + list(kwargs.items())
        for place, value in places:
            try:
                pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
            except Exception as culprit:
                kind = type(value)
                raise SerializationError(
                    f"task {name!r}: argument {place} of type {kind.__module__}.{kind.__qualname__}"
                    f" cannot be pickled for the worker ({culprit})"
                ) from culprit
        raise SerializationError(f"task {name!r}: arguments cannot be pickled ({error})") from error


#: "module:function" names each executor calls once before its first task (integrations add).
executor_setup: list[str] = []


def _setup_hooks() -> list[str]:
    hooks = list(executor_setup)
    # An executor is a fresh interpreter: if this process runs Django from a settings module,
    # the executor sets up the same (checked in sys.modules, so asoq never imports Django).
    django_conf = sys.modules.get("django.conf")
    if (
        django_conf is not None
        and django_conf.settings.configured
        and os.environ.get("DJANGO_SETTINGS_MODULE")
    ):
        hooks.append("asoq.django_setup:setup")
    return hooks
