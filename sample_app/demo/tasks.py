"""The demo's tasks: the original README's two, each recording its run in a ``TaskRun`` row.

They run in asoq's executor process, which has set Django up itself, so the ORM works here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

from django.utils import timezone

from asoq import task

from .models import TaskRun

logger = logging.getLogger(__name__)


def work_seconds(default: float) -> float:
    """How long a task pretends to work; ``SAMPLE_APP_TASK_SECONDS`` overrides (the tests)."""
    return float(os.environ.get("SAMPLE_APP_TASK_SECONDS", default))


@contextlib.contextmanager
def tracked(run_id: int) -> Iterator[None]:
    """Mark the run running, then done, or failed with the error (which asoq then logs)."""
    # update() writes only these columns, never the request_ms the view may be writing.
    runs = TaskRun.objects.filter(pk=run_id)
    runs.update(status=TaskRun.Status.RUNNING, started_at=timezone.now())
    logger.info("run %d started", run_id)
    try:
        yield
    except Exception as error:
        runs.update(status=TaskRun.Status.FAILED, finished_at=timezone.now(), error=repr(error))
        raise
    runs.update(status=TaskRun.Status.DONE, finished_at=timezone.now())
    logger.info("run %d done", run_id)


@task
def send_welcome_email(user_id: int, run_id: int) -> None:
    with tracked(run_id):
        logger.info("sending the welcome email to user %d...", user_id)
        time.sleep(work_seconds(3.0))
        logger.info("welcome email sent to user %d", user_id)


@task
def generate_report(report_id: str, run_id: int) -> None:
    with tracked(run_id):
        logger.info("generating report %s...", report_id)
        time.sleep(work_seconds(5.0))
        logger.info("report %s is complete", report_id)
