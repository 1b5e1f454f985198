"""ASOQ: background tasks for Django and any WSGI app, with no broker and no extra command.

::

    from asoq import task

    @task
    def send_welcome_email(user_id: int) -> None: ...

    send_welcome_email.delay(user_id=1)
"""

from .errors import (
    AsoqError,
    InvalidOptions,
    QueueFull,
    SerializationError,
    TaskCrashed,
    TaskDefinitionError,
    TaskFailed,
    TaskLost,
    TaskTimedOut,
    WorkerError,
)
from .options import TaskOptions, WorkerOptions
from .result import Status, TaskHandle
from .runtime import start_worker, stop_worker, wait_idle
from .task import Task, task

__all__ = [
    # Defining and enqueuing tasks
    "task",
    "Task",
    "TaskOptions",
    "TaskHandle",
    "Status",
    # The worker
    "start_worker",
    "stop_worker",
    "wait_idle",
    "WorkerOptions",
    # Errors
    "AsoqError",
    "TaskDefinitionError",
    "InvalidOptions",
    "SerializationError",
    "QueueFull",
    "WorkerError",
    "TaskFailed",
    "TaskTimedOut",
    "TaskCrashed",
    "TaskLost",
]
