from __future__ import annotations

import os

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse

from asoq import runtime

from .notes import tasks
from .notes.models import Note


def note(request: HttpRequest) -> HttpResponse:
    """Adds a note in the background, with ``.delay()`` or ``.after_response()``."""
    how = request.GET.get("how", "after_response")
    handle = getattr(tasks.add_note, how)(request.GET["text"])
    return JsonResponse({"id": handle.id, "held": Note.objects.count()})


def notes(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"texts": sorted(Note.objects.values_list("text", flat=True))})


def options(request: HttpRequest) -> HttpResponse:
    """What this serving process's worker was started with (the settings under test)."""
    worker = runtime._client
    assert worker is not None
    return JsonResponse(
        {
            "pid": os.getpid(),
            "worker": worker.process.pid,
            "concurrency": worker.options.concurrency,
            "max_pending": worker.options.max_pending,
        }
    )


def connections(request: HttpRequest) -> HttpResponse:
    counts = [tasks.connections_opened.delay().result(timeout=30) for _ in range(3)]
    return JsonResponse({"counts": counts})


def file(request: HttpRequest) -> FileResponse:
    """The running script itself, sent as a file; a note is added once it is sent."""
    import __main__

    tasks.add_note.after_response("file sent")
    return FileResponse(open(__main__.__file__, "rb"))  # FileResponse closes it


def enqueue(request: HttpRequest) -> HttpResponse:
    """The server matrix's request: one record task with this id, by ``.delay()`` or after."""
    import time

    from tests import tasks as fixture_tasks

    how = request.GET["how"]
    task = fixture_tasks.record_slowly
    call = task.delay if how == "delay" else task.after_response
    seconds = float(os.environ.get("MATRIX_TASK_SECONDS", "0.02"))
    handle = call(os.environ["MATRIX_LOG"], {"id": int(request.GET["id"]), "how": how}, seconds)
    return JsonResponse({"pid": os.getpid(), "id": handle.id, "returned": time.time()})
