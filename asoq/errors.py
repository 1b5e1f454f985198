"""The exceptions ASOQ raises: one base class, a short hierarchy."""

from __future__ import annotations


class AsoqError(Exception):
    """Base class of every error ASOQ raises."""


class TaskDefinitionError(AsoqError, TypeError):
    """Raised when a function cannot become a task the worker can import by name."""


class InvalidOptions(AsoqError, ValueError):
    """Raised when a task option is unknown or has a value outside its rule."""


class SerializationError(AsoqError, TypeError):
    """Raised when a task's arguments cannot be pickled for the worker."""


class QueueFull(AsoqError):
    """Raised when a task cannot be enqueued now: ``max_pending`` reached, or a stuck worker."""


class WorkerError(AsoqError):
    """Raised when the worker cannot be started, reached or configured."""


class TaskFailed(AsoqError):
    """Raised by ``result()`` when a task failed and its own exception cannot be rebuilt."""

    def __init__(self, message: str, *, exception_type: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.traceback = traceback


class TaskTimedOut(TaskFailed):
    """Raised by ``result()`` when a task ran past its ``time_limit`` and was stopped."""


class TaskCrashed(TaskFailed):
    """Raised by ``result()`` when the process running a task died under it."""


class TaskLost(TaskFailed):
    """Raised by ``result()`` when a task was dropped: worker gone or drain timeout passed."""
