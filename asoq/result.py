"""The handle ``.delay()`` returns: the task's id, its status, and its outcome once known."""

from __future__ import annotations

import enum
import pickle
import threading
from typing import Generic, TypeVar

from .errors import TaskCrashed, TaskFailed, TaskLost, TaskTimedOut, WorkerError
from .protocol import Failure

R = TypeVar("R")

_FAILURES: dict[str, type[TaskFailed]] = {
    "raised": TaskFailed,
    "timeout": TaskTimedOut,
    "crashed": TaskCrashed,
    "lost": TaskLost,
}
_NOT_SET = object()
_waiter_lock = threading.Lock()


class Status(enum.StrEnum):
    """Where a task is; the last two are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised in an executor (its ``__cause__``)."""

    def __str__(self) -> str:
        return f"\n\n{self.args[0]}"


class TaskHandle(Generic[R]):
    """One enqueued call, as seen from the process that enqueued it.

    ``result(timeout)`` waits for the outcome and returns the task's return value or raises its
    exception (rebuilt from the executor, with the remote traceback as ``__cause__``; a
    :class:`~asoq.TaskFailed` subclass when it cannot be rebuilt or the run never finished).
    """

    __slots__ = (
        "task_name",
        "status",
        "attempts",
        "_prefix",
        "_seq",
        "_payload",
        "_value",
        "_waiter",
    )

    def __init__(self, task_name: str, prefix: str, seq: int) -> None:
        self.task_name = task_name
        self._prefix = prefix
        self._seq = seq
        self.status = Status.QUEUED
        #: How many runs have started, retries included.
        self.attempts = 0
        self._payload = b""
        self._value: object = _NOT_SET
        self._waiter: threading.Event | None = None

    @property
    def id(self) -> str:
        """Unique among this process's tasks; the one the ``asoq`` log records name."""
        # Formatted on demand: building the string costs a measurable part of .delay().
        return f"{self._prefix}-{self._seq}"

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_name}[{self.id}] {self.status}>"

    def done(self) -> bool:
        return self.status is Status.SUCCEEDED or self.status is Status.FAILED

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the task is done or ``timeout`` seconds pass; return whether it is done."""
        if self.done():
            return True
        with _waiter_lock:
            if self._waiter is None:
                self._waiter = threading.Event()
        # The reader sets the status before it looks for a waiter, so checking again after
        # installing the event closes the window where both would miss each other.
        if self.done():
            return True
        return self._waiter.wait(timeout)

    def result(self, timeout: float | None = None) -> R:
        """The return value; raises the task's error, or ``TimeoutError`` if not done in time."""
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.task_name}[{self.id}] not done after {timeout} s")
        if self.status is Status.FAILED:
            raise self._error()
        if self._value is _NOT_SET:
            self._value = pickle.loads(self._payload) if self._payload else None
        return self._value  # type: ignore[return-value]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error the task failed with, ``None`` if it succeeded; waits like ``result()``."""
        if not self.wait(timeout):
            raise TimeoutError(f"task {self.task_name}[{self.id}] not done after {timeout} s")
        return self._error() if self.status is Status.FAILED else None

    # Called by the client's outcome reader (or inline, in eager mode).

    def _started(self, attempt: int) -> None:
        self.status = Status.RUNNING
        self.attempts = attempt

    def _requeued(self) -> None:
        self.status = Status.QUEUED

    def _finish(self, ok: bool, payload: bytes, attempts: int, value: object = _NOT_SET) -> None:
        self.attempts = attempts
        self._payload = payload
        self._value = value
        self.status = Status.SUCCEEDED if ok else Status.FAILED
        waiter = self._waiter
        if waiter is not None:
            waiter.set()

    def _error(self) -> BaseException:
        if isinstance(self._value, BaseException):
            return self._value
        failure = Failure.decode(self._payload)
        error: BaseException | None = None
        if failure.exception:
            try:
                error = pickle.loads(failure.exception)
            except Exception:
                error = None
        if error is None:
            error = _FAILURES[failure.reason](
                f"task {self.task_name}[{self.id}] {failure.message}",
                exception_type=failure.exception_type,
                traceback=failure.traceback,
            )
        if failure.traceback:
            error.__cause__ = RemoteTraceback(failure.traceback)
        self._value = error
        return error


class UntrackedHandle(TaskHandle[R]):
    """The handle of a task enqueued from inside a running task.

    Its outcome is logged by the worker like any other, but reported to no process: waiting
    for it raises :class:`~asoq.WorkerError` rather than block for ever.
    """

    __slots__ = ()

    def wait(self, timeout: float | None = None) -> bool:
        raise WorkerError(
            f"task {self.task_name}[{self.id}] was enqueued from inside a task: its outcome "
            f"is logged, not reported back, so it cannot be waited for"
        )


def lost(handle: TaskHandle[object], why: str) -> None:
    """Mark ``handle`` failed because its run will never report back."""
    handle._finish(False, Failure("lost", "", f"was lost: {why}").encode(), handle.attempts)
