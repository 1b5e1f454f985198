"""The Django integration, in real processes: settings, checks, executors, runserver."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ROOT,
    Script,
    command_line,
    descendants,
    listening_ports,
    running,
    wait_for,
    workers_under,
)

SETTINGS = "tests.django_site.settings"


def django_env(tmp_path: Path, **settings: Any) -> dict[str, str]:
    """The environment that points a process at the test project, with these settings."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "ASOQ_TEST_DB": str(tmp_path / "db.sqlite3"),
        "ASOQ_TEST_SETTINGS": json.dumps(settings),
    }


def manage(tmp_path: Path, *args: str, **settings: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=django_env(tmp_path, **settings),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def get(port: int, path: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)
    finally:
        connection.close()


def test_bad_settings_are_reported_as_system_checks_with_stable_ids(tmp_path: Path) -> None:
    result = manage(
        tmp_path,
        "check",
        ASOQ_DEFER_UNTIL_RESPONSE=1,
        ASOQ_CONCURRENCY=0,
        ASOQ_DRAIN_TIMEOUT=-1,
        ASOQ_EAGER="yes",
        ASOQ_CONCURENCY=2,
    )
    assert result.returncode == 1
    for expected in [
        "asoq.E001) ASOQ_DEFER_UNTIL_RESPONSE: must be True or False, not 1.",
        "asoq.E002) ASOQ_CONCURRENCY: concurrency must be a whole number >= 1, not 0.",
        "asoq.E004) ASOQ_DRAIN_TIMEOUT: drain_timeout must be a number of seconds >= 0",
        "asoq.E005) ASOQ_EAGER: eager must be True or False, not 'yes'.",
        "asoq.W001) ASOQ_CONCURENCY is not an ASOQ setting.",
    ]:
        assert expected in result.stderr


def test_good_settings_pass_the_checks(tmp_path: Path) -> None:
    result = manage(tmp_path, "check", ASOQ_CONCURRENCY=2, ASOQ_DEFER_UNTIL_RESPONSE=True)
    assert result.returncode == 0, result.stderr
    assert "asoq." not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["migrate", "--noinput"],
        ["check"],
        ["shell", "-c", "print('hello')"],
        ["test", "tests.django_site.notes"],
    ],
)
def test_management_commands_start_no_worker(tmp_path: Path, command: list[str]) -> None:
    result = manage(tmp_path, *command)
    assert result.returncode == 0, result.stderr
    # The asoq logger is at DEBUG in these settings: a starting worker would say so.
    assert "asoq worker" not in result.stderr


IMPORT_WSGI = """
import os, threading
from pathlib import Path
from tests.django_site.wsgi import application
children = [p for p in Path("/proc").iterdir() if p.name.isdigit()
            and (p / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid())]
assert threading.active_count() == 1 and not children, (threading.enumerate(), children)
print("nothing started")
"""


def test_importing_the_projects_wsgi_py_starts_nothing(tmp_path: Path, script: Script) -> None:
    stdout, stderr = script.run(IMPORT_WSGI, env=django_env(tmp_path))
    assert stdout == "nothing started\n" and "asoq worker" not in stderr


FILE_RESPONSE = """
import wsgiref.util
import asoq
from werkzeug.wsgi import FileWrapper
from tests.django_site.wsgi import application
from tests.django_site.notes.models import Note
from django.core.management import call_command

call_command("migrate", verbosity=0)
environ = {"PATH_INFO": "/file", "SCRIPT_NAME": "", "wsgi.file_wrapper": FileWrapper}
wsgiref.util.setup_testing_defaults(environ)
result = application(environ, lambda status, headers: None)
assert type(result) is FileWrapper, type(result)  # the server's own: sendfile still works
assert b"".join(result) == open(__file__, "rb").read()
assert not asoq.wait_idle(timeout=0)  # held until close
result.close()
assert asoq.wait_idle(timeout=30)
assert list(Note.objects.values_list("text", flat=True)) == ["file sent"]
assert asoq.stop_worker(timeout=10)
print("ok")
"""


def test_a_file_response_keeps_the_servers_file_wrapper(tmp_path: Path, script: Script) -> None:
    stdout, _ = script.run(FILE_RESPONSE, env=django_env(tmp_path))
    assert stdout == "ok\n"


SERVE = """
import sys
from werkzeug.serving import make_server
from tests.django_site.wsgi import application

server = make_server("127.0.0.1", 0, application, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


@pytest.fixture
def django_server(tmp_path: Path, script: Script) -> Any:
    def start(**settings: Any) -> int:
        assert manage(tmp_path, "migrate", "--noinput").returncode == 0
        proc = script.start(SERVE, env=django_env(tmp_path, **settings))
        assert proc.stdout is not None
        return int(proc.stdout.readline())

    return start


def test_settings_map_onto_the_middleware_and_the_worker(django_server: Any) -> None:
    port = django_server(ASOQ_CONCURRENCY=2, ASOQ_MAX_PENDING=77, ASOQ_DEFER_UNTIL_RESPONSE=True)
    options = get(port, "/options")
    assert (options["concurrency"], options["max_pending"]) == (2, 77)
    wait_for(lambda: len(descendants(options["worker"])) == 2, what="two executors")
    # ASOQ_DEFER_UNTIL_RESPONSE holds .delay() too: the note is not there during the request.
    assert get(port, "/note?text=held&how=delay")["held"] == 0
    wait_for(lambda: get(port, "/notes")["texts"] == ["held"], what="the held task to run")


def test_executors_set_django_up_and_close_connections_around_each_task(
    django_server: Any,
) -> None:
    port = django_server()
    get(port, "/note?text=first")
    get(port, "/note?text=second")
    wait_for(lambda: get(port, "/notes")["texts"] == ["first", "second"], what="the ORM tasks")
    # Each task opens its own connection: the one before it was closed after it.
    first, second, third = get(port, "/connections")["counts"]
    assert second == first + 1 and third == second + 1


TEST_CLIENT = """
import django
django.setup()
from django.core.management import call_command
from django.test import Client
import asoq
from asoq import runtime
from tests.django_site.notes.models import Note

call_command("migrate", verbosity=0)
response = Client().get("/note", {"text": "from the test client"})
assert response.status_code == 200
# The test Client does not go through wsgi.py: .after_response() enqueued at once.
assert response.json()["held"] == 0 and runtime._client is not None
assert asoq.wait_idle(timeout=30)
assert list(Note.objects.values_list("text", flat=True)) == ["from the test client"]
assert asoq.stop_worker(timeout=10)
print("ok")
"""


def test_outside_wsgi_py_after_response_enqueues_at_once(tmp_path: Path, script: Script) -> None:
    stdout, _ = script.run(TEST_CLIENT, env=django_env(tmp_path))
    assert stdout == "ok\n"


def runserver(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], int, int]:
    """``runserver`` with its autoreloader on port 0: the process, its serving child, the port."""
    assert manage(tmp_path, "migrate", "--noinput").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", "127.0.0.1:0"],
        env={**django_env(tmp_path), **env},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    children: list[int] = []

    def serving() -> bool:
        children[:] = [p for p in descendants(proc.pid) if listening_ports(p)]
        return bool(children)

    wait_for(serving, timeout=30, what="runserver to listen")
    child = children[0]
    return proc, child, min(listening_ports(child))


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def test_runserver_starts_the_worker_in_its_serving_child_only(tmp_path: Path) -> None:
    proc, child, port = runserver(tmp_path)
    try:
        assert workers_under(proc.pid) == [], "nothing starts before the first request"
        get(port, "/note?text=via-runserver")
        wait_for(lambda: get(port, "/notes")["texts"] == ["via-runserver"])
        (worker,) = workers_under(proc.pid)
        assert worker in descendants(child)
        outer_children = [
            p for p in descendants(proc.pid) if p != child and p not in descendants(child)
        ]
        assert outer_children == []
    finally:
        stop(proc)


def test_the_original_readmes_start_in_ready_still_works(tmp_path: Path) -> None:
    proc, child, port = runserver(tmp_path, ASOQ_TEST_START_IN_READY="1")
    try:
        wait_for(lambda: workers_under(proc.pid), what="ready() to start the worker")
        (worker,) = workers_under(proc.pid)
        assert worker in descendants(child), "only the serving child (RUN_MAIN) starts one"
        get(port, "/note?text=seed")
        wait_for(lambda: get(port, "/notes")["texts"] == ["seed"])
        # Executors run ready() too (django.setup()), but never start workers of their own.
        executors = [p for p in descendants(worker) if "asoq-executor" in command_line(p)]
        assert executors and all(not descendants(e) for e in executors)
        assert workers_under(proc.pid) == [worker]
    finally:
        stop(proc)
    # The serving child was killed outright: the worker notices, drains and exits by itself.
    wait_for(lambda: not running(worker), timeout=15, what="the orphaned worker to exit")


DATABASE_LOCKED = """
import sqlite3, sys
import django
django.setup()
from django.core.management import call_command
import asoq
from tests.django_site.notes import tasks
from tests.django_site.notes.models import Note

call_command("migrate", verbosity=0)
holder = sqlite3.connect(sys.argv[1])
holder.execute("BEGIN EXCLUSIVE")  # another writer holds the database
locked = tasks.add_note.delay("while locked")
try:
    locked.result(timeout=30)
except Exception as error:
    print("failed:", type(error).__name__, error, flush=True)
holder.rollback()
assert tasks.add_note.delay("after").result(timeout=30) is None
assert list(Note.objects.values_list("text", flat=True)) == ["after"]
print("id:", locked.id)
assert asoq.stop_worker(timeout=10)
"""


def test_a_task_raising_while_the_database_is_locked_is_logged_and_the_next_runs(
    tmp_path: Path, script: Script
) -> None:
    db = tmp_path / "db.sqlite3"
    settings = {
        "DATABASES": {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(db),
                "OPTIONS": {"timeout": 0.2},
            }
        }
    }
    stdout, stderr = script.run(DATABASE_LOCKED, str(db), env=django_env(tmp_path, **settings))
    assert "failed: OperationalError database is locked" in stdout
    handle_id = stdout.split("id: ")[1].split()[0]
    expected = f"Task tests.django_site.notes.tasks:add_note[{handle_id}] raised OperationalError"
    assert expected in stderr and "database is locked" in stderr
