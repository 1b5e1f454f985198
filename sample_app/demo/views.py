from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from asoq import Task

from . import tasks
from .models import TaskRun

# What each button enqueues: the task, and its arguments besides the run's id.
CALLS: dict[str, tuple[Task[..., None], Callable[[int], dict[str, Any]]]] = {
    "send_welcome_email": (tasks.send_welcome_email, lambda run_id: {"user_id": 42}),
    "generate_report": (tasks.generate_report, lambda run_id: {"report_id": f"R-{run_id}"}),
}
MODES = [choice.value for choice in TaskRun.Mode]
MAX_WORK_AFTER_MS = 5000
RECENT_RUNS = 20


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    buttons = [(name, mode) for name in CALLS for mode in MODES]
    return render(request, "demo/index.html", {"buttons": buttons, "max_ms": MAX_WORK_AFTER_MS})


@require_POST
def enqueue(request: HttpRequest) -> JsonResponse:
    """Record a run, enqueue its task with ``.delay()`` or ``.after_response()``, and answer
    with how long this view took; the task itself starts once the response is closed."""
    started = time.perf_counter()
    try:
        name, mode, work_after_ms = _click(_fields(request))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    task, arguments = CALLS[name]
    run = TaskRun.objects.create(task=name, mode=mode)
    how = task.delay if mode == TaskRun.Mode.DELAY else task.after_response
    how(run_id=run.pk, **arguments(run.pk))
    # The rest of a real view's work (queries, rendering): a held task waits for it to end,
    # where a .delay() without defer_until_response would compete with it.
    time.sleep(work_after_ms / 1000)
    request_ms = (time.perf_counter() - started) * 1000
    TaskRun.objects.filter(pk=run.pk).update(request_ms=request_ms)
    # The server's clock as the view returns (Unix seconds): a held task starts later still,
    # once the server has sent this response and closed it.
    returned_at = time.time()
    return JsonResponse(
        {
            "id": run.pk,
            "task": name,
            "mode": mode,
            "request_ms": request_ms,
            "returned_at": returned_at,
        }
    )


@require_GET
def runs(request: HttpRequest) -> JsonResponse:
    recent = TaskRun.objects.order_by("-pk")[:RECENT_RUNS]
    return JsonResponse({"runs": [run.as_json() for run in recent]})


def _fields(request: HttpRequest) -> Mapping[str, Any]:
    """A POST's fields: a JSON object (the page's fetch()) or a form."""
    if request.content_type != "application/json":
        return request.POST
    data = json.loads(request.body)  # a JSONDecodeError is a ValueError
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _click(fields: Mapping[str, Any]) -> tuple[str, str, float]:
    """The task, the mode and the extra work of one click, or ``ValueError`` saying the rule."""
    name, mode = fields.get("task"), fields.get("mode")
    if name not in CALLS:
        raise ValueError(f"task must be one of {', '.join(CALLS)}, not {name!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    try:
        work_after_ms = float(fields.get("work_after_ms") or 0)
    except (TypeError, ValueError):
        work_after_ms = -1.0
    if not 0 <= work_after_ms <= MAX_WORK_AFTER_MS:
        raise ValueError(f"work_after_ms must be a number from 0 to {MAX_WORK_AFTER_MS}")
    return name, mode, work_after_ms
