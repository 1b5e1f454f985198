"""The worker's in-memory queue: ready jobs by priority, scheduled jobs by due time."""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(slots=True, eq=False)
class Job:
    """One task call as the worker holds it: its scheduling fields and its frame, unopened."""

    seq: int
    name: str
    priority: int
    time_limit: float  # 0: none
    retries: int
    retry_backoff: float
    frame: bytes
    attempt: int = 0
    #: Empty for the client's jobs; for a job a task enqueued, the id prefix of its executor.
    #: Such a job's outcome is logged but reported to no process.
    origin: str = ""


class JobQueue:
    """Highest priority first, call order within a priority; scheduled jobs wait for their time.

    A deque per priority keeps push and pop O(1) in the common case of one priority, where a
    heap of every job would cost a log-n sift on both.
    """

    def __init__(self) -> None:
        self._ready: dict[int, deque[Job]] = {}
        self._priorities: list[int] = []  # ascending, only those with ready jobs
        self._scheduled: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return sum(map(len, self._ready.values())) + len(self._scheduled)

    def has_ready(self) -> bool:
        return bool(self._priorities)

    def push(self, job: Job, due: float = 0.0) -> None:
        """Queue ``job``; with ``due`` (a ``time.monotonic()`` time) not before then."""
        if due:
            heapq.heappush(self._scheduled, (due, next(self._order), job))
        else:
            self._lane(job.priority).append(job)

    def push_front(self, jobs: Iterable[Job]) -> None:
        """Put ``jobs`` back ahead of their priority's lane, keeping their order."""
        for job in reversed(list(jobs)):
            self._lane(job.priority).appendleft(job)

    def peek(self) -> Job:
        return self._ready[self._priorities[-1]][0]

    def pop(self) -> Job:
        priority = self._priorities[-1]
        lane = self._ready[priority]
        job = lane.popleft()
        if not lane:
            del self._ready[priority]
            self._priorities.pop()
        return job

    def release_due(self, now: float) -> float | None:
        """Make scheduled jobs due by ``now`` ready; return when the next one falls due."""
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= now:
            job = heapq.heappop(scheduled)[2]
            self._lane(job.priority).append(job)
        return scheduled[0][0] if scheduled else None

    def take_all(self) -> Iterator[Job]:
        """Remove and yield every job, ready ones first."""
        while self._priorities:
            yield self.pop()
        while self._scheduled:
            yield heapq.heappop(self._scheduled)[2]

    def _lane(self, priority: int) -> deque[Job]:
        lane = self._ready.get(priority)
        if lane is None:
            lane = self._ready[priority] = deque()
            bisect.insort(self._priorities, priority)
        return lane
