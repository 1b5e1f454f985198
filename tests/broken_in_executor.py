"""A task module that imports in the enqueuing process but fails in the executor."""

from asoq import runtime, task

if runtime._in_executor:
    raise ImportError("tests.broken_in_executor refuses to load in an executor")


@task
def unreachable() -> None:
    pass
