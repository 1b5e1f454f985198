"""A task module that imports in the enqueuing process but fails in the executor."""

from asoq import client, task

if client._in_executor:
    raise ImportError("tests.broken_in_executor refuses to load in an executor")


@task
def unreachable() -> None:
    pass
