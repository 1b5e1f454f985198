from __future__ import annotations

from django.db import connection
from django.db.backends.signals import connection_created

from asoq import task

from .models import Note

_opened = 0


def _count(sender: object, **kwargs: object) -> None:
    global _opened
    _opened += 1


connection_created.connect(_count)


@task
def add_note(text: str) -> None:
    Note.objects.create(text=text)


@task
def connections_opened() -> int:
    """How many connections this executor has opened, this task's included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return _opened
