"""Tasks held back until the current response closes.

The WSGI middleware makes one :class:`HeldTasks` per request and activates it (a context
variable) while the application runs and while each chunk of its response is produced, so
tasks enqueued from a view or from inside a streaming generator land in it. Each call is
checked, pickled and counted against ``max_pending`` at once, in the caller; only the write
to the worker's pipe waits for ``release()``, so the hand-over in ``close()`` is one write.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any

from . import client, runtime

if TYPE_CHECKING:
    from .result import TaskHandle
    from .task import Task

logger = logging.getLogger("asoq")

_active: contextvars.ContextVar[HeldTasks | None] = contextvars.ContextVar(
    "asoq_held_tasks", default=None
)


def current() -> HeldTasks | None:
    """The held tasks of the request being handled here, or ``None`` outside any request."""
    return _active.get()


class HeldTasks:
    """One request's held calls, in call order."""

    __slots__ = ("defer_all", "_calls")

    def __init__(self, defer_all: bool) -> None:
        #: Whether ``.delay()`` is held too, not only ``.after_response()``.
        self.defer_all = defer_all
        self._calls: list[tuple[client.Client, int, TaskHandle[Any], bytes]] = []

    def __bool__(self) -> bool:
        return bool(self._calls)

    def activate(self) -> contextvars.Token[HeldTasks | None]:
        return _active.set(self)

    @staticmethod
    def deactivate(token: contextvars.Token[HeldTasks | None]) -> None:
        _active.reset(token)

    def hold(self, task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        owner = runtime._current()
        if owner is None:
            return runtime._run_eagerly(task, args, kwargs)  # eager mode does not wait
        seq, handle, frame = owner.prepare(task, args, kwargs)
        self._calls.append((owner, seq, handle, frame))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Task %s[%s] held until the response closes", task.name, handle.id)
        return handle

    def release(self) -> None:
        """Hand every held call to the worker, in call order, in one write."""
        calls, self._calls = self._calls, []
        if len(calls) > 1 and any(call[0] is not calls[0][0] for call in calls):
            # The worker was replaced during the request: each call goes to the pipe it was
            # counted for, and a dead one reports its calls lost.
            for call in calls:
                self._send([call])
        elif calls:
            self._send(calls)

    def _send(self, calls: list[tuple[client.Client, int, TaskHandle[Any], bytes]]) -> None:
        owner = calls[0][0]
        try:
            owner.send(calls[0][3] if len(calls) == 1 else b"".join(call[3] for call in calls))
        except client._WorkerGone:
            self._lose(calls, "the worker died")
            return
        except client._PipeFull:
            self._lose(calls, owner.pipe_full())
            return
        if logger.isEnabledFor(logging.DEBUG):
            for call in calls:
                logger.debug("Task %s[%s] enqueued", call[2].task_name, call[2].id)

    @staticmethod
    def _lose(calls: list[tuple[client.Client, int, TaskHandle[Any], bytes]], why: str) -> None:
        for _, _, handle, _ in calls:
            logger.error("Task %s[%s] lost: %s", handle.task_name, handle.id, why)
        calls[0][0].cancel([call[1] for call in calls], why)

    def discard(self, why: str) -> None:
        """Drop every held call, each logged at WARNING with its name and id."""
        calls, self._calls = self._calls, []
        for owner, seq, handle, _ in calls:
            logger.warning("Task %s[%s] discarded: %s", handle.task_name, handle.id, why)
            owner.cancel([seq], f"was discarded: {why}")
