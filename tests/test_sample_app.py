"""The sample app end to end, as ``make run`` serves it: werkzeug with its reloader, real HTTP.

Every button is clicked once; every task must run exactly once, only after the response that
enqueued it, and stopping the server must leave no process behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, interruptible, live_processes, running, wait_for

SAMPLE_APP = ROOT / "sample_app"
BUTTONS = [
    (name, mode)
    for name in ("send_welcome_email", "generate_report")
    for mode in ("delay", "after_response")
]
HTTP_TIMEOUT = 10
WORK_AFTER_MS = 200


class Server:
    """``serve.py --port 0`` in its own session, its output in a file.

    The reloader's watcher, its serving child, the asoq worker and its executor all share the
    session's process group: ``cleanup()`` kills the whole group, whatever the test did.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "server.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "sample_project.settings",
            "SAMPLE_APP_DB": str(tmp_path / "db.sqlite3"),
            "SAMPLE_APP_TASK_SECONDS": "0.2",
        }
        migrate = subprocess.run(
            [sys.executable, str(SAMPLE_APP / "manage.py"), "migrate", "--noinput"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                interruptible([sys.executable, str(SAMPLE_APP / "serve.py"), "--port", "0"]),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = ""

    def wait_until_serving(self) -> None:
        wait_for(lambda: self._port() or self.proc.poll() is not None, 30, "the server's port")
        port = self._port()
        assert port, f"serve.py exited ({self.proc.returncode}):\n{self.output()}"
        self.url = f"http://127.0.0.1:{port}"

    def _port(self) -> str | None:
        found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", self.output())
        return found[1] if found else None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def group(self) -> list[int]:
        """The live processes in the server's process group."""
        return [pid for pid, (_, group) in live_processes().items() if group == self.proc.pid]

    def cleanup(self) -> None:
        # The group outlives its leader while any member lives, so this also reaches a worker
        # orphaned by a serving child that died.
        if self.group():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path)
    try:
        started.wait_until_serving()
        yield started
    finally:
        started.cleanup()


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request: its status, headers and whole body, error statuses included."""
    sent = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(sent, timeout=HTTP_TIMEOUT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


class Page:
    """What the page's JavaScript does: click a button, read the runs table."""

    def __init__(self, url: str) -> None:
        self.url = url
        status, headers, page = request(url + "/")
        assert status == 200
        self.html = page.decode()
        token = SimpleCookie(headers["Set-Cookie"])["csrftoken"].value
        self.csrf = {"X-CSRFToken": token, "Cookie": f"csrftoken={token}"}

    def click(self, name: str, mode: str, *, as_form: bool = False) -> dict[str, Any]:
        """POST one click; return the view's JSON answer."""
        fields = {"task": name, "mode": mode, "work_after_ms": str(WORK_AFTER_MS)}
        # The page sends JSON; the view takes a plain form too.
        if as_form:
            body = urllib.parse.urlencode(fields).encode()
            content_type = "application/x-www-form-urlencoded"
        else:
            body, content_type = json.dumps(fields).encode(), "application/json"
        status, _, answer = request(
            self.url + "/enqueue/", body, {"Content-Type": content_type, **self.csrf}
        )
        assert status == 200, answer
        reply: dict[str, Any] = json.loads(answer)
        assert (reply["task"], reply["mode"]) == (name, mode)
        assert reply["request_ms"] >= WORK_AFTER_MS
        return reply

    def runs(self) -> dict[int, dict[str, Any]]:
        status, _, body = request(self.url + "/runs/")
        assert status == 200, body
        return {run["id"]: run for run in json.loads(body)["runs"]}

    def wait_done(self, run_id: int) -> dict[str, Any]:
        wait_for(lambda: self.runs()[run_id]["status"] == "done", 15, f"run {run_id} to be done")
        return self.runs()[run_id]


@pytest.mark.parametrize("stop_with", ["SIGINT", "SIGTERM"])  # Ctrl-C in `make run`; a supervisor
def test_every_button_runs_its_task_once_after_its_response(server: Server, stop_with: str) -> None:
    page = Page(server.url)
    for name, mode in BUTTONS:
        assert f'data-task="{name}" data-mode="{mode}"' in page.html
    status, _, _ = request(server.url + "/enqueue/", b"task=generate_report&mode=delay")
    assert status == 403  # no CSRF token

    # The first task waits for the executor to set Django up; after it, each task finds the
    # executor idle and would start at once if it were not held.
    warm_up = page.click("generate_report", "delay")["id"]
    page.wait_done(warm_up)
    run_ids = [warm_up]
    for i, (name, mode) in enumerate(BUTTONS):
        reply = page.click(name, mode, as_form=i % 2 == 1)
        run = page.wait_done(reply["id"])
        run_ids.append(run["id"])
        # The view lingers WORK_AFTER_MS after enqueuing, so a task handed over at once would
        # start before the view returns. after_response() holds its task until the response
        # is closed; with defer_until_response=True (sample_project/wsgi.py) so does delay().
        # (The client's own clock is no reference: werkzeug closes a response at most 10 ms
        # after sending it, whether or not the client has read it yet.)
        assert run["started_at"] > reply["returned_at"], (reply, run)
        assert run["enqueued_at"] < run["started_at"] < run["finished_at"], run
        assert run["request_ms"] >= WORK_AFTER_MS and run["error"] == "", run

    started = re.search(r"asoq worker (\d+) started for process (\d+)", server.output())
    assert started, server.output()
    worker, serving = int(started[1]), int(started[2])
    assert serving != server.proc.pid  # the reloader's serving child, not its watcher

    ours = server.group()
    assert {worker, serving} <= set(ours)
    os.killpg(server.proc.pid, getattr(signal, stop_with))
    wait_for(lambda: not any(map(running, ours)), timeout=15, what="every process to end")
    server.proc.wait(5)

    output = server.output()
    for run_id in run_ids:
        assert len(re.findall(rf"\brun {run_id} started\b", output)) == 1, output
    assert "Traceback" not in output, output
