"""``AsoqMiddleware``: one line in ``wsgi.py`` gives the serving process its worker.

::

    # wsgi.py
    from django.core.wsgi import get_wsgi_application
    from asoq.wsgi import AsoqMiddleware

    application = AsoqMiddleware(get_wsgi_application(), defer_until_response=True)

Constructing the middleware starts nothing: the worker starts on the first request in each
serving process, so a pre-fork master (gunicorn ``--preload``), a reloader's watcher process and
``manage.py`` commands never get one. ``.after_response()`` calls, and with
``defer_until_response=True`` every ``.delay()`` call, made while a request is handled (in the
view or while its response is produced) are held and handed to the worker, in call order,
from the response's ``close()``, after the application's own ``close()``. If the application
raises, or producing its response fails, the request's held tasks are discarded, each logged at
WARNING. It works for any WSGI application.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import runtime
from .options import WORKER_OPTION_NAMES, WorkerOptions
from .request import HeldTasks

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class AsoqMiddleware:
    """Wrap a WSGI application; keyword arguments are ``defer_until_response`` and the
    :class:`~asoq.WorkerOptions` names. Any left out come from the ``ASOQ_*`` Django settings
    when ``"asoq"`` is installed, else from their defaults."""

    def __init__(
        self,
        application: WSGIApplication,
        *,
        defer_until_response: bool | None = None,
        **worker_options: Any,
    ) -> None:
        if defer_until_response is not None and not isinstance(defer_until_response, bool):
            raise TypeError(
                f"AsoqMiddleware: defer_until_response must be True or False, "
                f"not {defer_until_response!r}"
            )
        WorkerOptions.build(worker_options)  # a bad option fails here, in wsgi.py
        self.application = application
        self._defer = defer_until_response
        self._worker_options = worker_options
        self._pid = 0  # the process whose worker this middleware started

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self._pid != os.getpid():
            self._start()
        held = HeldTasks(self._defer is True)
        token = held.activate()
        try:
            result = self.application(environ, start_response)
        except BaseException:
            held.discard("the application raised")
            raise
        finally:
            held.deactivate(token)
        if isinstance(result, (list, tuple)):
            # No user code runs while a list is sent: only what is held already can be.
            return _HeldList(result, held) if held else result
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(result, file_wrapper):
            # Servers send their own file wrapper with sendfile() and recognise it by type, so
            # it is passed through with its close() hooked, the way Django does it.
            if held:
                _hook_close(result, held)
            return result
        return _HeldResponse(result, held)

    def _start(self) -> None:
        if self._defer is None:
            self._defer = bool(runtime.defaults().get("defer_until_response", False))
        runtime.ensure_worker(
            {k: v for k, v in self._worker_options.items() if k in WORKER_OPTION_NAMES}
        )
        self._pid = os.getpid()


class _HeldResponse:
    """The application's response, produced with the request's held tasks active and handing
    them over once it is closed."""

    __slots__ = ("_held", "_iterable", "_iterator")

    def __init__(self, iterable: Iterable[bytes], held: HeldTasks) -> None:
        self._iterable = iterable
        self._iterator: Iterator[bytes] | None = None
        self._held = held

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        held = self._held
        token = held.activate()
        try:
            if self._iterator is None:
                self._iterator = iter(self._iterable)
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException:
            held.discard("producing the response failed")
            raise
        finally:
            held.deactivate(token)

    def close(self) -> None:
        _close_then_release(getattr(self._iterable, "close", None), self._held)


class _HeldList(list[bytes]):
    """A list response that hands the held tasks over on close (a list keeps its length,
    which servers use to set Content-Length)."""

    def __init__(self, chunks: Iterable[bytes], held: HeldTasks) -> None:
        super().__init__(chunks)
        self._held = held

    def close(self) -> None:
        _close_then_release(None, self._held)


def _hook_close(result: Any, held: HeldTasks) -> None:
    original = getattr(result, "close", None)
    result.close = lambda: _close_then_release(original, held)


def _close_then_release(close: Any, held: HeldTasks) -> None:
    if close is not None:
        try:
            close()
        except BaseException:
            held.discard("closing the response failed")
            raise
    held.release()
