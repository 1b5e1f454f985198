"""``@task``: a module-level function the worker can import by name, with typed options.

A task is checked when it is decorated (so a lambda, a nested function or a method fails where
it is written) and its call arguments are checked against its signature when it is enqueued
(so a wrong call fails in the caller, not later in an executor).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import protocol, request, runtime
from .errors import TaskDefinitionError
from .options import DEFAULT_OPTIONS, TaskOptions
from .result import TaskHandle

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function made into a task. Calling it runs it inline; ``.delay()`` enqueues it."""

    func: Callable[P, R]
    options: TaskOptions
    name: str

    def __init__(self, func: Callable[P, R], options: TaskOptions = DEFAULT_OPTIONS) -> None:
        self.name = _importable_name(func)
        options.check(self.name)
        self.func = func
        self.options = options
        self._check_arguments = _argument_checker(func)
        self._pack_options()
        functools.update_wrapper(self, func)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.func(*args, **kwargs)

    def run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the call to its end, as a worker does: an ``async def`` task's coroutine is
        run with ``asyncio.run`` (the executor, and eager mode, have no loop of their own)."""
        value = self.func(*args, **kwargs)
        if inspect.iscoroutine(value):
            import asyncio

            value = asyncio.run(value)
        return value

    def using(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed, e.g. ``send.using(countdown=5)``."""
        copy = object.__new__(Task)
        copy.__dict__.update(self.__dict__)
        copy.options = self.options.replace(self.name, options)
        copy._pack_options()
        return copy

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Enqueue this call now; return its handle once the worker's pipe has it."""
        self._check(args, kwargs)
        held = request.current()
        if held is not None and held.defer_all:
            handle: TaskHandle[R] = held.hold(self, args, kwargs)
        else:
            handle = runtime.enqueue(self, args, kwargs)
        return handle

    def after_response(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle[R]:
        """Enqueue this call when the current response closes; outside a request, now.

        "Outside a request" is anywhere the WSGI middleware is not handling one: a management
        command, a shell, a thread started by a view, or Django's test ``Client`` (which does
        not pass through ``wsgi.py``).
        """
        self._check(args, kwargs)
        held = request.current()
        if held is not None:
            handle: TaskHandle[R] = held.hold(self, args, kwargs)
        else:
            handle = runtime.enqueue(self, args, kwargs)
        return handle

    def _check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            self._check_arguments(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"task {self.name!r}: {error}") from None

    def _pack_options(self) -> None:
        options = self.options
        self._packed_options = protocol.task_options(
            self.name.encode(),
            options.priority,
            options.time_limit or 0.0,
            options.retries,
            options.retry_backoff,
        )
        self._runs_now = options.countdown is None and options.eta is None

    def _frame(self, seq: int, payload: bytes) -> bytes:
        due = 0.0 if self._runs_now else self.options.due()
        return protocol.task_frame(seq, due, self._packed_options, payload)


@overload
def task(func: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    *,
    time_limit: float | None = ...,
    retries: int = ...,
    retry_backoff: float = ...,
    countdown: float | None = ...,
    eta: Any = ...,
    priority: int = ...,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...
def task(func: Callable[P, R] | None = None, /, **options: Any) -> Any:
    """Make a module-level function a task: ``@task`` or ``@task(retries=3, ...)``."""

    def decorate(func: Callable[P, R]) -> Task[P, R]:
        name = _importable_name(func)
        return Task(func, DEFAULT_OPTIONS.replace(name, options))

    return decorate if func is None else decorate(func)


def _importable_name(func: object) -> str:
    """``module:qualname``, or raise if an executor could not import ``func`` by that name."""
    if isinstance(func, Task):
        raise TaskDefinitionError(f"{func.name} is already a task; use .using() to change options")
    if not inspect.isfunction(func):
        raise TaskDefinitionError(
            f"@task needs a function defined with def at module level, not {func!r}"
        )
    where = f"{func.__module__}.{func.__qualname__}"
    rule = "a task must be a module-level function, since the worker imports it by name"
    if func.__name__ == "<lambda>":
        raise TaskDefinitionError(f"task {where} is a lambda; {rule}")
    if "." in func.__qualname__.rpartition("<locals>.")[2]:
        raise TaskDefinitionError(f"task {where} is defined in a class; {rule}")
    if func.__qualname__ != func.__name__:
        raise TaskDefinitionError(f"task {where} is defined inside a function; {rule}")
    if func.__module__ == "__main__":
        raise TaskDefinitionError(
            f"task {func.__qualname__} is defined in __main__, which the worker does not "
            f"import (it would run the script again); {rule} of an importable module"
        )
    return f"{func.__module__}:{func.__qualname__}"


class _Default:
    def __repr__(self) -> str:
        return "None"


def _argument_checker(func: Callable[..., Any]) -> Callable[..., None]:
    """A do-nothing function with ``func``'s parameters: calling it checks a call's arguments.

    ``inspect.Signature.bind`` does the same in pure Python and costs more than the whole
    hand-over; a compiled stub lets the interpreter's own argument parsing do it.
    """
    signature = inspect.signature(func)
    parameters = [
        parameter.replace(
            annotation=inspect.Parameter.empty,
            default=inspect.Parameter.empty if parameter.default is parameter.empty else _Default(),
        )
        for parameter in signature.parameters.values()
    ]
    stub = signature.replace(parameters=parameters, return_annotation=inspect.Signature.empty)
    namespace: dict[str, Any] = {}
    exec(f"def {func.__name__}{stub}: pass", namespace)  # noqa: S102 - names are identifiers
    checker: Callable[..., None] = namespace[func.__name__]
    return checker
