"""How the worker starts and ends with the process that owns it, run in real scripts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Script, read_records, running, wait_for

TASKS = 200

ENQUEUE_THEN_END = f"""
import os, signal, sys, threading
import asoq
from tests import tasks

log, how = sys.argv[1], sys.argv[2]
for i in range({TASKS}):
    tasks.record.delay(log, i)
print("enqueued", flush=True)
if how == "os._exit":
    os._exit(0)
if how == "sys.exit":
    sys.exit(0)
if how == "wait":
    threading.Event().wait(60)
"""


@pytest.mark.parametrize("how", ["return", "sys.exit", "os._exit", "SIGTERM", "SIGKILL"])
def test_when_its_process_ends_the_worker_runs_every_task_then_exits(
    script: Script, tmp_path: Path, how: str
) -> None:
    log = tmp_path / "log"
    proc = script.start(ENQUEUE_THEN_END, str(log), how if how[:3] != "SIG" else "wait")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "enqueued\n"
    if how.startswith("SIG"):
        os.kill(proc.pid, getattr(signal, how))  # the script alone, not its group
    wait_for(lambda: len(read_records(log)) >= TASKS, timeout=30, what="every task to run")
    records = read_records(log)
    assert sorted(r["value"] for r in records) == list(range(TASKS))  # type: ignore[type-var]
    ours = {int(r["pid"]) for r in records} | {int(r["ppid"]) for r in records}  # type: ignore[call-overload]
    script.pids.extend(ours)
    wait_for(lambda: not any(map(running, ours)), timeout=15, what="worker and executor to exit")
    proc.wait(10)


DRAIN = """
import sys, time
import asoq
from tests import tasks
from tests.conftest import read_records
from pathlib import Path

log, never = sys.argv[1], sys.argv[2]
asoq.start_worker(drain_timeout=0.5)
stuck = tasks.hold.delay(log, never)
queued = [tasks.noop.delay() for _ in range(3)]
print(stuck.id, *(h.id for h in queued), flush=True)
deadline = time.monotonic() + 20
while not read_records(Path(log)) and time.monotonic() < deadline:
    time.sleep(0.01)
"""


def test_what_outlives_the_drain_timeout_is_dropped_and_logged(
    script: Script, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    proc = script.start(DRAIN, str(log), str(tmp_path / "never"))
    # The worker and its executor share the script's stderr: it closes only when all are gone.
    stdout, stderr = proc.communicate(timeout=20)
    stuck, *queued = stdout.split()
    dropped = f"Task tests.tasks:hold[{stuck}] dropped: still unfinished 0.5 s after its process"
    assert dropped in stderr
    for handle_id in queued:
        assert f"Task tests.tasks:noop[{handle_id}] dropped" in stderr
    assert "Traceback" not in stderr
    executor = int(read_records(log)[0]["pid"])  # type: ignore[call-overload]
    assert not running(executor)


CTRL_C = """
import sys, threading
import asoq
from tests import tasks

asoq.start_worker(drain_timeout=0.5)
handle = tasks.hold.delay(sys.argv[1], sys.argv[2])
print(handle.id, flush=True)
try:
    threading.Event().wait(60)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_ends_everything_within_the_bound_without_tracebacks(
    script: Script, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    proc = script.start(CTRL_C, str(log), str(tmp_path / "never"))
    assert proc.stdout is not None
    handle_id = proc.stdout.readline().strip()
    wait_for(lambda: read_records(log), what="the task to start")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    _stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert f"Task tests.tasks:hold[{handle_id}] dropped" in stderr


THREADED_START = """
import threading
import asoq
from tests import tasks

idle = threading.Event()
threads = [threading.Thread(target=idle.wait) for _ in range(4)]
for thread in threads:
    thread.start()
results = []

def enqueue_from_a_thread():
    asoq.start_worker()
    results.append(tasks.add.delay(2, 2).result(timeout=30))

starter = threading.Thread(target=enqueue_from_a_thread)
starter.start()
starter.join(60)
idle.set()
assert results == [4], results
assert asoq.stop_worker(timeout=10)
print("ok")
"""


def _pythons() -> dict[str, str]:
    """This interpreter and every other supported one found on the PATH, by version."""
    found = {f"{sys.version_info.major}.{sys.version_info.minor}": sys.executable}
    for version in ("3.11", "3.12", "3.13"):
        path = shutil.which(f"python{version}")
        # A pyenv shim is on the PATH even when its version is not selected: try it.
        if version not in found and path and subprocess.run([path, "-c", ""]).returncode == 0:
            found[version] = path
    return found


@pytest.mark.parametrize("python", list(_pythons().values()), ids=list(_pythons()))
def test_it_starts_cleanly_from_a_threaded_process_with_warnings_as_errors(
    script: Script, python: str
) -> None:
    stdout, stderr = script.run(THREADED_START, python=python, flags=("-W", "error"))
    assert stdout == "ok\n"
    assert stderr == "", stderr


PARENT_CONTEXT = """
print("the main module ran", flush=True)
import os, sys
sys.path.append(sys.argv[1])
os.environ["ASOQ_TEST_MARK"] = "set by the parent"
import extra_tasks
from tests import tasks

path, mark = tasks.environment.delay("ASOQ_TEST_MARK").result(timeout=30)
assert path == sys.path, (path, sys.path)
assert mark == "set by the parent", mark
assert extra_tasks.where.delay().result(timeout=30) == extra_tasks.__file__
import asoq
assert asoq.stop_worker(timeout=10)
"""

EXTRA_TASKS = """
from asoq import task

@task
def where():
    return __file__
"""


def test_executors_get_the_parents_path_and_environment_not_its_main_module(
    script: Script, tmp_path: Path
) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extra_tasks.py").write_text(EXTRA_TASKS)
    stdout, _ = script.run(PARENT_CONTEXT, str(extra))
    assert stdout.count("the main module ran") == 1


FORKED = """
import os, warnings
import asoq
from tests import tasks

parent_worker = tasks.whoami.delay().result(timeout=30)[1]
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # our outcome thread is running
    child = os.fork()
if child == 0:
    try:
        worker = tasks.whoami.delay().result(timeout=30)[1]
        with open(f"/proc/{worker}/stat") as stat:
            worker_parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        print("child", os.getpid(), worker, worker_parent, flush=True)
        asoq.stop_worker(timeout=10)
    finally:
        os._exit(0)
os.waitpid(child, 0)
print("parent", parent_worker, tasks.whoami.delay().result(timeout=30)[1], flush=True)
assert asoq.stop_worker(timeout=10)
"""


def test_a_forked_process_starts_its_own_worker_and_leaves_the_parents_alone(
    script: Script,
) -> None:
    stdout, _ = script.run(FORKED)
    lines = dict(line.split(" ", 1) for line in stdout.splitlines())
    child, child_worker, child_worker_parent = map(int, lines["child"].split())
    parent_worker, parent_worker_after = map(int, lines["parent"].split())
    assert child_worker != parent_worker
    assert child_worker_parent == child
    assert parent_worker_after == parent_worker


FIRST_CALL_THEN_EXIT = """
import os, sys
from tests import tasks

tasks.record.delay(sys.argv[1], "the only one")  # this call also starts the worker
os._exit(0)
"""


def test_the_very_first_task_survives_an_immediate_os_exit(script: Script, tmp_path: Path) -> None:
    log = tmp_path / "log"
    script.run(FIRST_CALL_THEN_EXIT, str(log))
    wait_for(lambda: read_records(log), timeout=20, what="the task to run")
    (record,) = read_records(log)
    assert record["value"] == "the only one"
    script.pids.extend([int(record["pid"]), int(record["ppid"])])  # type: ignore[call-overload]
