"""AsoqMiddleware on a real werkzeug server (threaded, port 0) with a real HTTP client."""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
import wsgiref.util
import wsgiref.validate
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import FileWrapper

import asoq
from asoq import runtime as asoq_runtime
from asoq.wsgi import AsoqMiddleware
from tests import tasks, wsgi_apps
from tests.conftest import Script, descendants, read_records


class Server:
    def __init__(self, application: Any) -> None:
        self.httpd = make_server("127.0.0.1", 0, application, threaded=True)
        self.port = self.httpd.server_port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def get(self, path: str) -> tuple[int, bytes, float]:
        """Status, body and the time the last byte arrived."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            return response.status, body, time.time()
        finally:
            connection.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Server] = []

    def start(application: Any) -> Server:
        servers.append(Server(application))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_importing_and_constructing_start_nothing() -> None:
    threads = threading.active_count()
    AsoqMiddleware(wsgi_apps.app, defer_until_response=True, concurrency=2)
    assert asoq_runtime._client is None
    assert threading.active_count() == threads and not descendants(os.getpid())


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(asoq.InvalidOptions, match="concurrency must be a whole number"):
        AsoqMiddleware(wsgi_apps.app, concurrency=0)
    with pytest.raises(TypeError, match="defer_until_response must be True or False"):
        AsoqMiddleware(wsgi_apps.app, defer_until_response="yes")  # type: ignore[arg-type]


def test_the_first_request_starts_the_worker_of_the_serving_process(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(AsoqMiddleware(wsgi_apps.app, concurrency=2))
    assert asoq_runtime._client is None
    status, _, _ = server.get(f"/several?log={tmp_path / 'log'}&tag=a")
    assert status == 200
    client = asoq_runtime._client
    assert client is not None and client.pid == os.getpid() and client.options.concurrency == 2
    assert asoq.wait_idle(timeout=10)


def test_after_response_starts_only_once_the_client_has_the_last_byte(
    serve: Any, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    server = serve(AsoqMiddleware(wsgi_apps.app))
    status, body, last_byte = server.get(f"/after-response-stream?log={log}&tag=s")
    assert status == 200 and body.startswith(b"chunk 0\n")
    assert asoq.wait_idle(timeout=10)
    records = read_records(log)
    # In call order, the one enqueued from inside the streaming generator included.
    assert [r["value"] for r in records] == ["s:after", "s:from-the-generator"]
    assert all(float(r["time"]) >= last_byte for r in records)  # type: ignore[arg-type]


@pytest.mark.parametrize("defer", [False, True])
def test_delay_runs_during_the_request_unless_deferred(
    serve: Any, tmp_path: Path, defer: bool
) -> None:
    log = tmp_path / "log"
    server = serve(AsoqMiddleware(wsgi_apps.app, defer_until_response=defer))
    wait = 0 if defer else 10
    status, body, _ = server.get(f"/delay?log={log}&tag=d&wait={wait}")
    response = json.loads(body)
    assert status == 200 and response["ran"] is (not defer)
    assert asoq.wait_idle(timeout=10)
    (record,) = read_records(log)
    if defer:
        assert float(record["time"]) > response["returned"]  # type: ignore[arg-type]


def test_a_failing_view_or_response_discards_its_held_tasks(
    serve: Any, tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    server = serve(AsoqMiddleware(wsgi_apps.app))
    assert server.get(f"/several?log={log}&tag=x&fail=1")[0] == 500
    with pytest.raises(http.client.IncompleteRead):
        server.get(f"/fail-while-streaming?log={log}&tag=y")
    assert server.get(f"/several?log={log}&tag=ok")[0] == 200
    assert asoq.wait_idle(timeout=10)
    assert [r["value"] for r in read_records(log)] == ["ok:0", "ok:1", "ok:2"]
    warnings = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.WARNING]
    discarded = [m for m in warnings if "discarded" in m]
    assert len(discarded) == 4
    assert sum("discarded: the application raised" in m for m in discarded) == 3
    assert any("discarded: producing the response failed" in m for m in discarded)
    assert all(m.startswith("Task tests.tasks:record[") for m in discarded)


def test_concurrent_requests_never_see_each_others_tasks(serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    server = serve(AsoqMiddleware(wsgi_apps.app, defer_until_response=True))
    statuses: dict[int, int] = {}

    def request(n: int) -> None:
        fail = "&fail=1" if n % 3 == 0 else ""
        statuses[n] = server.get(f"/several?log={log}&tag={n}{fail}")[0]

    threads = [threading.Thread(target=request, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert asoq.wait_idle(timeout=10)
    assert statuses == {n: 500 if n % 3 == 0 else 200 for n in range(24)}
    values = sorted(str(r["value"]) for r in read_records(log))
    assert values == sorted(f"{n}:{i}" for n in range(24) if n % 3 for i in range(3))


def call(application: Any, path: str, **environ: Any) -> tuple[str, Any]:
    """Call a WSGI app in process, as a server would; returns the status and the result."""
    env: dict[str, Any] = {"PATH_INFO": path.split("?")[0], "SCRIPT_NAME": "", **environ}
    env["QUERY_STRING"] = path.partition("?")[2]
    wsgiref.util.setup_testing_defaults(env)
    started: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append(status)
        return lambda data: None

    result = application(env, start_response)
    return started[0] if started else "", result


def test_the_file_wrapper_is_passed_through_with_its_close_hooked(tmp_path: Path) -> None:
    log, served = tmp_path / "log", tmp_path / "file.bin"
    served.write_bytes(b"x" * 100_000)

    def file_app(environ: Any, start_response: Any) -> Any:
        tasks.record.after_response(str(log), "file")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](served.open("rb"), 8192)

    _, result = call(AsoqMiddleware(file_app), "/", **{"wsgi.file_wrapper": FileWrapper})
    assert type(result) is FileWrapper, "a server must still recognise its own wrapper"
    assert sum(map(len, result)) == 100_000
    assert asoq.wait_idle(timeout=0) is False, "the task is held, so pending"
    assert not read_records(log)
    result.close()
    assert result.file.closed
    assert asoq.wait_idle(timeout=10) and read_records(log)[0]["value"] == "file"


def test_held_tasks_go_after_the_applications_own_close(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _, result = call(AsoqMiddleware(wsgi_apps.app), f"/closing?log={log}&tag=c")
    assert list(result) == [b"body"]
    result.close()
    assert asoq.wait_idle(timeout=10)
    assert [r["value"] for r in read_records(log)] == ["c:app-closed", "c:task"]


def test_close_may_come_from_another_thread(tmp_path: Path) -> None:
    log = tmp_path / "log"
    _, result = call(AsoqMiddleware(wsgi_apps.app), f"/several?log={log}&tag=t")
    assert list(result) == [b"ok"] and len(result) == 1  # still a list: Content-Length works
    closer = threading.Thread(target=result.close)
    closer.start()
    closer.join(10)
    assert asoq.wait_idle(timeout=10)
    assert [r["value"] for r in read_records(log)] == ["t:0", "t:1", "t:2"]


@pytest.mark.parametrize("path", ["/several", "/after-response-stream", "/delay", "/nowhere"])
def test_the_middleware_is_wsgi_compliant(tmp_path: Path, path: str) -> None:
    checked = wsgiref.validate.validator(AsoqMiddleware(wsgiref.validate.validator(wsgi_apps.app)))
    _, result = call(checked, f"{path}?log={tmp_path / 'log'}&tag=v")
    for _ in result:
        pass
    result.close()
    assert asoq.wait_idle(timeout=10)


def test_it_wraps_any_wsgi_application_such_as_a_werkzeug_one(serve: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"

    @Request.application  # type: ignore[arg-type]
    def werkzeug_app(request: Request) -> Response:
        tasks.record.after_response(str(log), request.args["tag"])
        return Response("hello from werkzeug")

    server = serve(AsoqMiddleware(werkzeug_app))
    status, body, _ = server.get("/?tag=w")
    assert (status, body) == (200, b"hello from werkzeug")
    assert asoq.wait_idle(timeout=10) and read_records(log)[0]["value"] == "w"


PRELOAD = """
import os, sys, wsgiref.util
from asoq import runtime
from asoq.wsgi import AsoqMiddleware
from tests import tasks

def app(environ, start_response):
    start_response("200 OK", [])
    return [str(tasks.whoami.delay().result(timeout=30)[1]).encode()]

application = AsoqMiddleware(app)  # built in the "master", as gunicorn --preload does
assert runtime._client is None
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        environ = {}
        wsgiref.util.setup_testing_defaults(environ)
        worker = int(b"".join(application(environ, lambda status, headers: None)))
        os.write(1, f"{os.getpid()} {worker}\\n".encode())  # one write: siblings share stdout
        runtime.stop_worker(timeout=10)
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
assert runtime._client is None, "the master never starts a worker"
"""


def test_each_process_forked_after_construction_starts_its_own_worker(
    script: Script,
) -> None:
    stdout, _ = script.run(PRELOAD)
    pairs = [tuple(map(int, line.split())) for line in stdout.splitlines()]
    assert len(pairs) == 2 and pairs[0][1] != pairs[1][1]


def test_a_worker_already_running_is_kept_and_other_options_are_reported(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    asoq.start_worker()
    running_client = asoq_runtime._client
    _, result = call(AsoqMiddleware(wsgi_apps.app, concurrency=2), f"/several?log={tmp_path}/l")
    result.close()
    assert asoq_runtime._client is running_client
    warnings = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.WARNING]
    assert any("the options given here ({'concurrency': 2}) are not used" in m for m in warnings)
