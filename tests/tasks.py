"""Module-level tasks the tests enqueue (executors import them by name)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path

from asoq import task


def wait_for_path(path: str, timeout: float = 30.0) -> None:
    """Block until ``path`` exists: how a test holds an executor busy, then lets it go."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def append_line(path: str, **fields: object) -> None:
    line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "time": time.time(), **fields})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())  # O_APPEND: one small write lands whole
    finally:
        os.close(fd)


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def noop() -> None:
    pass


@task
def whoami() -> tuple[int, int]:
    """The executor's PID and its parent's: the worker's."""
    return os.getpid(), os.getppid()


@task
def environment(name: str) -> tuple[list[str], str | None]:
    return sys.path, os.environ.get(name)


@task
def record(path: str, value: object = None) -> None:
    append_line(path, value=value)


@task
def hold(path: str, release: str, value: object = None) -> None:
    """Record that it started, then wait until ``release`` exists."""
    append_line(path, value=value)
    wait_for_path(release)


@task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


class StubbornError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")


@task
def fail_stubbornly() -> None:
    raise StubbornError(7, "cannot be rebuilt from its args")


@task
def flaky(path: str, failures: int) -> int:
    """Fail the first ``failures`` runs (counted in ``path``), then return the run number."""
    append_line(path)
    runs = len(Path(path).read_text().splitlines())
    if runs <= failures:
        raise RuntimeError(f"run {runs} fails")
    return runs


@task
def exit_hard(code: int = 3) -> None:
    os._exit(code)


@task
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@task
def segfault() -> None:
    ctypes.string_at(0)


@task
def unpicklable_result() -> object:
    return lambda: None


@task
def echo(value: bytes) -> int:
    return len(value)


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task(time_limit=0.5)
def slow(path: str) -> None:
    append_line(path)
    wait_for_path(path + ".never")


@task
def record_slowly(path: str, value: object = None, seconds: float = 0.02) -> None:
    """Record, a little later: long enough that a reload or a recycling finds tasks queued."""
    time.sleep(seconds)
    append_line(path, value=value)


@task
def fan_out(path: str, count: int) -> list[str]:
    """Enqueue ``count`` record tasks from inside this one; return their ids."""
    return [record.delay(path, f"child {i}").id for i in range(count)]


@task
def wait_for_a_child() -> None:
    noop.delay().result(timeout=5)


@task
def fail_in_a_child() -> str:
    return fail.delay("child failure").id


@task
def process_name() -> str:
    import logging

    return logging.makeLogRecord({}).processName or ""
