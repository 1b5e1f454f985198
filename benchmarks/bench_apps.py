"""The WSGI application the middleware benchmark serves: each request enqueues one no-op task.

``app`` keeps every handle it gets, so that between rounds :func:`check_tasks` can tell that
each task really ran (and succeeded) in the process that enqueued it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench_tasks import noop

import asoq

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

BODY = b"ok"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]

#: The handles of the tasks enqueued since the last check (list.append is thread-safe).
handles: list[asoq.TaskHandle[None]] = []


def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """Answer ``ok``, with ``noop(1)`` enqueued after the response (at once if not wrapped)."""
    handles.append(noop.after_response(1))
    start_response("200 OK", HEADERS)
    return [BODY]


def check_tasks(expected: int, timeout: float) -> None:
    """Wait until the worker is idle, then check that the ``expected`` tasks enqueued since the
    last check all succeeded; raise ``RuntimeError`` if not. Call it between rounds only."""
    if not asoq.wait_idle(timeout):
        raise RuntimeError(f"the worker was not idle after {timeout} s")
    done = handles[:]
    handles.clear()
    if len(done) != expected:
        raise RuntimeError(f"{len(done)} tasks were enqueued, not {expected}")
    failed = [handle for handle in done if handle.status is not asoq.Status.SUCCEEDED]
    if failed:
        raise RuntimeError(f"{len(failed)} of {expected} tasks did not succeed: {failed[0]!r}")
