"""Plain WSGI applications the middleware tests serve; each enqueues fixture tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from tests import tasks
from tests.conftest import read_records

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

from pathlib import Path


def app(environ: WSGIEnvironment, start_response: StartResponse) -> object:
    """Routes by path; the query string names the record file (``log``) and a ``tag``."""
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    log, tag = query.get("log", ""), query.get("tag", "")
    path = environ["PATH_INFO"]
    headers = [("Content-Type", "text/plain")]

    if path == "/after-response-stream":
        tasks.record.after_response(log, f"{tag}:after")

        def slowly() -> Iterator[bytes]:
            for i in range(5):
                time.sleep(0.05)  # a slow producer, not a synchronisation
                yield f"chunk {i}\n".encode()
            tasks.record.after_response(log, f"{tag}:from-the-generator")
            yield json.dumps({"produced": time.time()}).encode()

        start_response("200 OK", headers)
        return slowly()

    if path == "/delay":
        handle = tasks.record.delay(log, f"{tag}:delay")
        # Without deferral the task runs while we wait; with it, it cannot.
        deadline = time.monotonic() + float(query.get("wait", "0"))
        while not read_records(Path(log)) and time.monotonic() < deadline:
            time.sleep(0.005)
        ran = bool(read_records(Path(log)))
        start_response("200 OK", headers)
        return [json.dumps({"ran": ran, "id": handle.id, "returned": time.time()}).encode()]

    if path == "/several":
        for i in range(3):
            tasks.record.after_response(log, f"{tag}:{i}")
        if query.get("fail"):
            raise RuntimeError(f"request {tag} fails")
        start_response("200 OK", headers)
        return [b"ok"]

    if path == "/closing":
        tasks.record.after_response(log, f"{tag}:task")
        start_response("200 OK", headers)
        return ClosingBody(log, f"{tag}:app-closed")

    if path == "/fail-while-streaming":
        tasks.record.after_response(log, f"{tag}:never")

        def broken() -> Iterator[bytes]:
            yield b"partial"
            raise RuntimeError("the response breaks")

        start_response("200 OK", headers)
        return broken()

    start_response("404 Not Found", headers)
    return [b"not found"]


class ClosingBody:
    """A response whose own close() leaves a record, to see what runs first."""

    def __init__(self, log: str, value: str) -> None:
        self.log, self.value = log, value

    def __iter__(self) -> Iterator[bytes]:
        yield b"body"

    def close(self) -> None:
        tasks.append_line(self.log, value=self.value)
