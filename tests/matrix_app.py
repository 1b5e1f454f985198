"""The WSGI app every server in the matrix serves; ``MATRIX_LOG`` names the record file.

``/enqueue?id=N&how=delay|after_response`` enqueues one ``record`` task with that id;
``/slow?seconds=S`` answers late (to get a worker killed for its timeout); ``/pid`` answers
with the serving process's PID.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from asoq.wsgi import AsoqMiddleware
from tests import tasks

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


TASK_SECONDS = float(os.environ.get("MATRIX_TASK_SECONDS", "0.02"))


def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ["PATH_INFO"]
    answer: dict[str, Any] = {"pid": os.getpid()}
    if path == "/enqueue":
        how = query["how"]
        call = tasks.record_slowly.delay if how == "delay" else tasks.record_slowly.after_response
        value = {"id": int(query["id"]), "how": how}
        answer["id"] = call(os.environ["MATRIX_LOG"], value, TASK_SECONDS).id
    elif path == "/slow":
        time.sleep(float(query["seconds"]))  # a slow view, the thing under test
    answer["returned"] = time.time()
    body = json.dumps(answer).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


application = AsoqMiddleware(app, drain_timeout=float(os.environ.get("MATRIX_DRAIN_TIMEOUT", "5")))
