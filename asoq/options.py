"""Task options: one frozen, typed record shared by ``@task(...)`` and ``Task.using(...)``."""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from .errors import InvalidOptions

MIN_PRIORITY = -100
MAX_PRIORITY = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskOptions:
    """How the worker runs a task; every field has a default that means "nothing special".

    - ``time_limit``: seconds a run may take before its executor is killed (``None``: no limit).
    - ``retries``: how many times a failed run (raised, crashed or timed out) is tried again.
    - ``retry_backoff``: seconds before the first retry; each later retry waits twice as long.
    - ``countdown``: seconds to wait before the first run.
    - ``eta``: a timezone-aware ``datetime`` before which the task does not run.
    - ``priority``: from -100 to 100; a higher priority runs first, equal ones in call order.
    """

    time_limit: float | None = None
    retries: int = 0
    retry_backoff: float = 1.0
    countdown: float | None = None
    eta: datetime.datetime | None = None
    priority: int = 0

    def replace(self, task_name: str, changes: dict[str, Any]) -> TaskOptions:
        """Return a copy with ``changes`` applied, checked against the rules of each field."""
        unknown = sorted(set(changes) - OPTION_NAMES)
        if unknown:
            raise InvalidOptions(
                f"task {task_name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(sorted(OPTION_NAMES))}"
            )
        options = dataclasses.replace(self, **changes)
        options.check(task_name)
        return options

    def check(self, task_name: str) -> None:
        """Raise :class:`InvalidOptions`, naming the task and the rule, if a field is wrong."""

        def fail(rule: str) -> None:
            raise InvalidOptions(f"task {task_name!r}: {rule}")

        if self.time_limit is not None and not _positive_number(self.time_limit):
            fail(
                f"time_limit must be a positive number of seconds or None, not {self.time_limit!r}"
            )
        if not _integer(self.retries) or self.retries < 0:
            fail(f"retries must be a whole number >= 0, not {self.retries!r}")
        if not _number(self.retry_backoff) or self.retry_backoff < 0:
            fail(f"retry_backoff must be a number of seconds >= 0, not {self.retry_backoff!r}")
        if self.countdown is not None and (not _number(self.countdown) or self.countdown < 0):
            fail(f"countdown must be a number of seconds >= 0 or None, not {self.countdown!r}")
        if self.eta is not None:
            if not isinstance(self.eta, datetime.datetime) or self.eta.utcoffset() is None:
                fail(f"eta must be a timezone-aware datetime or None, not {self.eta!r}")
            if self.countdown is not None:
                fail("countdown and eta cannot both be set")
        if not _integer(self.priority) or not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            fail(
                f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, "
                f"not {self.priority!r}"
            )

    def due(self) -> float:
        """The wall-clock time (``time.time()``) before which a call made now must not run."""
        if self.eta is not None:
            return self.eta.timestamp()
        if self.countdown:
            return time.time() + self.countdown
        return 0.0


OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(TaskOptions))
DEFAULT_OPTIONS = TaskOptions()


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerOptions:
    """How a process's worker runs; ``start_worker(**options)`` takes exactly these names.

    - ``concurrency``: executor processes running tasks side by side.
    - ``max_pending``: tasks enqueued but not finished past which ``.delay()`` raises
      :class:`~asoq.QueueFull` (the bound on the memory the queue may hold).
    - ``drain_timeout``: seconds the worker keeps running what it holds once the process that
      started it is gone; what is left then is dropped, each task logged.
    - ``eager``: run tasks inline in the caller, synchronously, errors propagating (for tests).
    - ``python``: the interpreter for the worker and executors (default: this one).
    """

    concurrency: int = 1
    max_pending: int = 10_000
    drain_timeout: float = 10.0
    eager: bool = False
    python: str | None = None

    @classmethod
    def build(cls, options: dict[str, Any]) -> WorkerOptions:
        """Check ``options`` by name and rule; raise :class:`InvalidOptions` on a wrong one."""
        unknown = sorted(set(options) - WORKER_OPTION_NAMES)
        if unknown:
            raise InvalidOptions(
                f"start_worker(): unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are {', '.join(sorted(WORKER_OPTION_NAMES))}"
            )
        built = cls(**options)

        def fail(rule: str) -> None:
            raise InvalidOptions(f"start_worker(): {rule}")

        if not _integer(built.concurrency) or built.concurrency < 1:
            fail(f"concurrency must be a whole number >= 1, not {built.concurrency!r}")
        if not _integer(built.max_pending) or built.max_pending < 1:
            fail(f"max_pending must be a whole number >= 1, not {built.max_pending!r}")
        if not _number(built.drain_timeout) or built.drain_timeout < 0:
            fail(f"drain_timeout must be a number of seconds >= 0, not {built.drain_timeout!r}")
        if not isinstance(built.eager, bool):
            fail(f"eager must be True or False, not {built.eager!r}")
        if built.python is not None and not (
            isinstance(built.python, str) and os.access(built.python, os.X_OK)
        ):
            fail(f"python must be the path of an interpreter or None, not {built.python!r}")
        return built


WORKER_OPTION_NAMES = frozenset(field.name for field in dataclasses.fields(WorkerOptions))
