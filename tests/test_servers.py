"""The server matrix: every server and mode people deploy with, each a real process on
127.0.0.1 with a real HTTP client, held to the same promises.

N requests each enqueue one task (half ``.delay()``, half ``.after_response()``) recording a
unique id: exactly N records come back, none twice; deferred ones start after their response;
workers run only under processes that served requests; our processes hold no socket and catch
no signal of the server's; and once the server is stopped, nothing of ours outlives the drain
timeout and the port can be bound again at once.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ROOT,
    descendants,
    interruptible,
    listening_ports,
    read_records,
    running,
    wait_for,
    workers_under,
)

DRAIN_TIMEOUT = 5.0
BIN = Path(sys.executable).parent
APP = "tests.matrix_app:application"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def caught_signals(pid: int) -> set[int]:
    mask = next(
        int(line.split()[1], 16)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("SigCgt:")
    )
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


def has_sockets(pid: int) -> bool:
    return any(os.readlink(fd).startswith("socket:") for fd in Path(f"/proc/{pid}/fd").iterdir())


class Served:
    """A server process in its own session, its port found in /proc, its output in a file."""

    def __init__(self, tmp_path: Path, command: list[str], **env: str) -> None:
        self.log = tmp_path / "records"
        self.output = tmp_path / "server.out"
        environment = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "MATRIX_LOG": str(self.log),
            "MATRIX_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT),
            **env,
        }
        with self.output.open("wb") as output:
            self.proc = subprocess.Popen(
                interruptible(command),
                cwd=tmp_path,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ours: set[int] = set()
        self.served_by: set[int] = set()  # every process that answered a request of ours
        self.port = 0
        wait_for(self._listening, timeout=60, what=f"{command[0]} to listen")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"the server exited:\n{self.output.read_text()}")
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            ports = listening_ports(pid)
            if ports:
                self.port = min(ports)
                return True
        return False

    def get(self, path: str) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200, body
        answer: dict[str, Any] = json.loads(body)
        self.served_by.add(answer["pid"])
        return answer

    def answers(self) -> bool:
        """Whether a request gets through now (a server restarting may cut connections)."""
        try:
            self.get("/pid")
        except (OSError, http.client.HTTPException):
            return False
        return True

    def enqueue(self, ids: range) -> dict[int, dict[str, Any]]:
        """One request per id, odd ones ``.delay()``, even ones ``.after_response()``."""
        return {
            n: self.get(f"/enqueue?id={n}&how={'delay' if n % 2 else 'after_response'}")
            for n in ids
        }

    def check(self, answers: dict[int, dict[str, Any]]) -> None:
        """Every request's task ran once, deferred ones after their response; workers run
        only under serving processes and keep to themselves."""
        wait_for(lambda: len(read_records(self.log)) >= len(answers), timeout=60, what="tasks")
        records = {r["value"]["id"]: r for r in read_records(self.log)}  # type: ignore[index]
        assert len(records) == len(read_records(self.log)), "a task ran twice"
        assert sorted(records) == sorted(answers)
        for n, record in records.items():
            self.ours |= {int(record["pid"]), int(record["ppid"])}  # type: ignore[call-overload]
            if record["value"]["how"] == "after_response":  # type: ignore[index]
                assert float(record["time"]) >= answers[n]["returned"]  # type: ignore[arg-type]
        for worker in workers_under(self.proc.pid):
            assert parent_of(worker) in self.served_by, "a worker where no request was served"
        workers = self.workers()
        for pid in self.ours:
            if running(pid):
                assert not has_sockets(pid), f"process {pid} holds a socket"
                allowed = {signal.SIGTERM} if pid in workers else set()
                assert caught_signals(pid) <= allowed, f"process {pid} catches the server's"

    def workers(self) -> set[int]:
        return {int(r["ppid"]) for r in read_records(self.log)}  # type: ignore[call-overload]

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """Stop the server as an operator would, then hold our processes to the drain bound."""
        os.kill(self.proc.pid, how)
        self.proc.wait(30)
        wait_for(
            lambda: not any(map(running, self.ours | set(descendants(self.proc.pid)))),
            timeout=DRAIN_TIMEOUT + 10,
            what="every process of ours to end",
        )
        with socket.socket() as probe:  # a restarted server binds its port at once
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", self.port))

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.ours:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    started: list[Served] = []

    def start(command: list[str], **env: str) -> Served:
        started.append(Served(tmp_path, command, **env))
        return started[-1]

    yield start
    for server in started:
        server.cleanup()


WERKZEUG = """
import sys
from werkzeug.serving import run_simple
from tests.matrix_app import application
mode = sys.argv[1]
run_simple(
    "127.0.0.1", 0, application,
    threaded=mode != "processes", processes=3 if mode == "processes" else 1,
    use_reloader=mode == "reloader",
)
"""

CELLS: dict[str, tuple[list[str], signal.Signals]] = {
    "werkzeug-threaded": ([sys.executable, "-c", WERKZEUG, "threaded"], signal.SIGINT),
    "werkzeug-processes=3": ([sys.executable, "-c", WERKZEUG, "processes"], signal.SIGINT),
    "werkzeug-reloader": ([sys.executable, "-c", WERKZEUG, "reloader"], signal.SIGINT),
    "gunicorn-sync-w2": (
        [str(BIN / "gunicorn"), "-b", "127.0.0.1:0", "-w", "2", APP],
        signal.SIGTERM,
    ),
    "gunicorn-sync-preload": (
        [str(BIN / "gunicorn"), "-b", "127.0.0.1:0", "-w", "2", "--preload", APP],
        signal.SIGTERM,
    ),
    "gunicorn-gthread": (
        [
            str(BIN / "gunicorn"),
            "-b",
            "127.0.0.1:0",
            "-w",
            "2",
            "-k",
            "gthread",
            "--threads",
            "4",
            APP,
        ],
        signal.SIGTERM,
    ),
    "waitress": ([str(BIN / "waitress-serve"), "--listen=127.0.0.1:0", APP], signal.SIGINT),
    "waitress-sigterm": (
        [str(BIN / "waitress-serve"), "--listen=127.0.0.1:0", APP],
        signal.SIGTERM,
    ),
}


@pytest.mark.parametrize("cell", list(CELLS))
def test_server_cell(served: Any, cell: str) -> None:
    command, stop_with = CELLS[cell]
    server = served(command)
    answers = server.enqueue(range(12 if "processes" in cell else 40))
    server.check(answers)
    server.stop(stop_with)


def test_gunicorn_recycling_workers_under_load_loses_nothing(served: Any) -> None:
    server = served(
        [str(BIN / "gunicorn"), "-b", "127.0.0.1:0", "-w", "2", "--max-requests", "7", APP]
    )
    answers = server.enqueue(range(60))
    assert len({a["pid"] for a in answers.values()}) > 2, "workers were recycled"
    server.check(answers)
    output = server.output.read_text()
    assert "Autorestarting worker" in output and "WORKER TIMEOUT" not in output
    server.stop(signal.SIGTERM)


def test_a_gunicorn_worker_killed_for_its_timeout_leaves_its_tasks_to_drain(
    served: Any,
) -> None:
    server = served(
        [str(BIN / "gunicorn"), "-b", "127.0.0.1:0", "-w", "1", "--timeout", "2", APP],
        MATRIX_TASK_SECONDS="0.4",
    )
    answers = server.enqueue(range(1, 21, 2))  # ten .delay() tasks, 4 s of work
    killed = answers[1]["pid"]
    # gunicorn aborts the worker serving this (SIGABRT, then SIGKILL): a 500 or a cut.
    with pytest.raises((AssertionError, ConnectionError, http.client.HTTPException)):
        server.get("/slow?seconds=10")
    wait_for(lambda: not running(killed), what="gunicorn to end the worker")
    assert "WORKER TIMEOUT" in server.output.read_text()
    assert len(read_records(server.log)) < len(answers), "tasks were still queued"
    server.check(answers)  # every task queued in the killed worker's asoq worker ran
    server.stop(signal.SIGTERM)


def runserver(*flags: str) -> list[str]:
    return [sys.executable, "-m", "django", "runserver", "127.0.0.1:0", *flags]


DJANGO = {
    "DJANGO_SETTINGS_MODULE": "tests.django_site.settings",
    "ASOQ_TEST_SETTINGS": json.dumps({"ASOQ_DRAIN_TIMEOUT": DRAIN_TIMEOUT}),
}


def test_runserver_noreload(served: Any) -> None:
    server = served(runserver("--noreload"), **DJANGO)
    server.check(server.enqueue(range(40)))
    server.stop(signal.SIGINT)


def test_runserver_reload_with_tasks_queued_loses_nothing_and_does_not_wait(
    served: Any,
) -> None:
    server = served(runserver(), **DJANGO, MATRIX_TASK_SECONDS="0.25")
    before = server.enqueue(range(1, 41, 2))  # 20 .delay() tasks: 5 s of work queued
    old_child = before[1]["pid"]
    os.utime(ROOT / "tests" / "django_site" / "views.py")  # a code change
    wait_for(lambda: not running(old_child), timeout=20, what="the reload to end the old child")
    # The old child's worker is still draining, yet the reloader has moved on.
    assert len(read_records(server.log)) < len(before), "the reload waited for the tasks"
    wait_for(server._listening, timeout=20, what="the new child to listen")
    after = server.enqueue(range(100, 120))
    assert {a["pid"] for a in after.values()} != {old_child}
    server.check({**before, **after})
    server.stop(signal.SIGINT)


def uwsgi(*flags: str) -> list[str]:
    return [
        str(BIN / "uwsgi"),
        *("--http-socket", "127.0.0.1:0", "--master", "--processes", "2", "--threads", "2"),
        *("--module", APP, "--need-app", "--disable-logging", *flags),
    ]


needs_uwsgi = pytest.mark.skipif(not (BIN / "uwsgi").exists(), reason="uWSGI is not installed")


@needs_uwsgi
@pytest.mark.parametrize("lazy", [False, True], ids=["preforked-app", "lazy-apps"])
def test_uwsgi_master_processes_threads(served: Any, lazy: bool) -> None:
    server = served(uwsgi(*(["--lazy-apps"] if lazy else [])))
    server.check(server.enqueue(range(40)))
    server.stop(signal.SIGINT)


@needs_uwsgi
def test_uwsgi_graceful_reload_with_tasks_queued_loses_nothing(served: Any) -> None:
    server = served(uwsgi(), MATRIX_TASK_SECONDS="0.1")
    before = server.enqueue(range(1, 41, 2))  # 2 s of .delay() tasks queued
    old = {a["pid"] for a in before.values()}
    os.kill(server.proc.pid, signal.SIGHUP)  # graceful reload: new workers, same master
    wait_for(lambda: not any(map(running, old)), timeout=30, what="the old workers to go")
    # A socket bound to port 0 is bound anew by the re-executed master: find its port again.
    wait_for(
        lambda: server._listening() and server.answers(), timeout=30, what="uWSGI to serve again"
    )
    after = server.enqueue(range(100, 120))
    assert not old & {a["pid"] for a in after.values()}
    server.check({**before, **after})
    server.stop(signal.SIGINT)
