"""No-op tasks for the benchmarks: module-level, so executors can import them by name."""

from asoq import task


@task
def noop(x: int) -> None:
    """Do nothing with ``x``: what is measured is the hand-over, not the work."""
