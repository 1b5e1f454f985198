from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models


class TaskRun(models.Model):
    """One click on the page: a task enqueued one way, and what became of it."""

    class Mode(models.TextChoices):
        DELAY = "delay"
        AFTER_RESPONSE = "after_response"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    task = models.CharField(max_length=100)
    mode = models.CharField(max_length=20, choices=Mode)
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    enqueued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # How long the enqueuing view took on the server, in milliseconds.
    request_ms = models.FloatField(null=True)
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.task} #{self.pk} ({self.mode}, {self.status})"

    def as_json(self) -> dict[str, Any]:
        """The row for the page, times as Unix seconds (JavaScript does the arithmetic)."""
        return {
            "id": self.pk,
            "task": self.task,
            "mode": self.mode,
            "status": self.status,
            "enqueued_at": _seconds(self.enqueued_at),
            "started_at": _seconds(self.started_at),
            "finished_at": _seconds(self.finished_at),
            "request_ms": self.request_ms,
            "error": self.error,
        }


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()
