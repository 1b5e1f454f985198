"""This process's worker: which one ``.delay()`` uses, and ``start_worker``/``stop_worker``.

There is at most one worker per process, started on first use (or by ``start_worker()``, or
by the WSGI middleware's first request), with options passed in code over :data:`defaults`
(the ``ASOQ_*`` Django settings once ``"asoq"`` is installed). A process forked from one with a
worker sees that the worker is not its own by comparing PIDs, not with an at-fork hook:
uWSGI forks without running them. In an executor, tasks enqueued by a task go to the
executor's own worker; eager mode runs them inline.
"""

from __future__ import annotations

import itertools
import os
import pickle
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .client import Client, _WorkerGone, logger, pickle_arguments
from .errors import WorkerError
from .options import WORKER_OPTION_NAMES, WorkerOptions
from .result import TaskHandle

if TYPE_CHECKING:
    from .task import Task

_lock = threading.RLock()
_client: Client | None = None
_options: WorkerOptions | None = None  # None: built from defaults() when a worker starts
_in_executor = False
_channel: Any = None
#: Where options not passed explicitly come from: Django settings once "asoq" is installed.
defaults: Callable[[], dict[str, Any]] = dict
_eager_ids = itertools.count(1)


def mark_executor(channel: Any) -> None:
    """Called in executors: they run tasks and never start a worker of their own; a task
    enqueued there goes through ``channel`` (an :class:`asoq.executor.TaskChannel`)."""
    global _in_executor, _channel
    _in_executor = True
    _channel = channel


def _own_client() -> Client | None:
    global _client
    client = _client
    if client is not None and client.pid != os.getpid():
        client.forget()
        _client = client = None
    return client


def _current() -> Client | None:
    global _client
    client = _client
    if client is not None and client.alive and client.pid == os.getpid():
        return client
    with _lock:
        client = _own_client()
        if client is not None and client.alive:
            return client
        options = resolved_options()
        if options.eager:
            return None
        _client = client = Client(options)
        return client


def resolved_options(explicit: dict[str, Any] | None = None) -> WorkerOptions:
    """The options a worker starting now gets: ``explicit`` ones over :data:`defaults`."""
    if _options is not None and not explicit:
        return _options
    known = {k: v for k, v in defaults().items() if k in WORKER_OPTION_NAMES}
    return WorkerOptions.build({**known, **(explicit or {})})


def ensure_worker(explicit: dict[str, Any]) -> None:
    """Start this process's worker unless it has one (the WSGI middleware's first request)."""
    _start(explicit, strict=False)


def enqueue(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Hand one call to this process's worker (started if need be) and return its handle."""
    if _in_executor:
        return _channel.submit(task, args, kwargs)
    client = _current()
    if client is None:
        return _run_eagerly(task, args, kwargs)
    try:
        return client.submit(task, args, kwargs)
    except _WorkerGone:
        # The worker died since the last call. Its reader thread logs what was lost; this
        # call goes to a new worker, once.
        client.alive = False
        client = _current()
        assert client is not None
        try:
            return client.submit(task, args, kwargs)
        except _WorkerGone as error:
            raise WorkerError(f"task {task.name!r}: the asoq worker died at start") from error


def _run_eagerly(task: Task[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # The arguments still make the round trip through pickle, so a test catches what the
    # worker would reject and the task gets copies, as it would in an executor.
    args, kwargs = pickle.loads(pickle_arguments(task.name, args, kwargs))
    handle: TaskHandle[Any] = TaskHandle(task.name, "eager", next(_eager_ids))
    handle._started(1)
    value = task.run(args, kwargs)
    handle._finish(True, b"", 1, value)
    return handle


def start_worker(**options: Any) -> None:
    """Start this process's worker now (``.delay()`` would start it on first use).

    Takes the :class:`~asoq.options.WorkerOptions` names. Calling it again is a no-op; calling
    it with other options while a worker runs is an error. In an executor it does nothing.
    """
    _start(options, strict=True)


def _start(explicit: dict[str, Any], strict: bool) -> None:
    """Start a worker with ``explicit`` options over the defaults, unless one runs already:
    then different options are an error (``strict``) or a warning."""
    global _client, _options
    if _in_executor:
        return
    with _lock:
        client = _own_client()
        if client is not None and client.alive:
            if explicit and resolved_options(explicit) != client.options:
                if strict:
                    raise WorkerError(
                        "start_worker(): a worker already runs with other options; "
                        "call stop_worker() first"
                    )
                logger.warning(
                    "asoq worker %d already runs with %s; the options given here (%s) are not used",
                    client.process.pid,
                    client.options,
                    explicit,
                )
            return
        _options = resolved_options(explicit)
        if not _options.eager:
            _client = Client(_options)


def stop_worker(timeout: float = 10.0) -> bool:
    """Let this process's worker finish what it holds for up to ``timeout`` s, then stop it.

    Tasks still unfinished then are logged and marked lost. Returns whether everything ran.
    Options go back to their defaults (eager mode included): the next start reads them anew.
    """
    global _client, _options
    with _lock:
        client = _own_client()
        _client = None
        _options = None
    if client is None:
        return True
    return client.stop(timeout)


def wait_idle(timeout: float | None = None) -> bool:
    """Wait until every task this process enqueued has finished; return ``False`` on timeout."""
    client = _own_client()
    return True if client is None else client.wait_idle(timeout)
