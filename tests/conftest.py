from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import asoq

ROOT = Path(__file__).resolve().parent.parent


def pytest_report_header() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("django", "werkzeug"))


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.01)


# Runs the rest of the command line with SIGINT at its default, as a terminal would start it:
# a shell running the tests in the background (or CI) may hand them SIGINT ignored, and
# Python then never installs its KeyboardInterrupt handler in what they start.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(command: list[str]) -> list[str]:
    """``command``, started with SIGINT restored to its default disposition."""
    return [sys.executable, "-c", _DEFAULT_SIGINT, *command]


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def live_processes() -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process: its PID, then its parent's PID and its process group."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, (parent, _) in live_processes().items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (FileNotFoundError, ProcessLookupError):
        return []


def workers_under(pid: int) -> list[int]:
    """ASOQ workers among the descendants of ``pid`` (they name themselves on their argv)."""
    return [p for p in descendants(pid) if "asoq-worker" in command_line(p)]


def listening_ports(pid: int) -> set[int]:
    """TCP ports that process ``pid`` listens on, read from /proc (a server bound to port 0
    does not always print the port it got)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return set()
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def read_records(path: Path) -> list[dict[str, object]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Every test ends with this process's worker stopped and no child of ours alive."""
    yield
    asoq.stop_worker(timeout=5)
    wait_for(lambda: not descendants(os.getpid()), timeout=15, what="our processes to end")


@pytest.fixture
def asoq_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture ``asoq`` records at DEBUG; use before the worker starts (it copies the level)."""
    caplog.set_level(logging.DEBUG, logger="asoq")
    return caplog


class Script:
    """A Python script run in its own session, killed with its whole group at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[str]] = []
        self.pids: list[int] = []  # workers and executors it reported, killed at teardown too

    def start(
        self,
        code: str,
        *args: str,
        python: str = sys.executable,
        flags: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        path = self.tmp_path / f"script{len(self.processes)}.py"
        path.write_text(code)
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        proc = subprocess.Popen(
            interruptible([python, *flags, str(path), *args]),
            cwd=self.tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def run(self, code: str, *args: str, timeout: float = 60, **kwargs: object) -> tuple[str, str]:
        proc = self.start(code, *args, **kwargs)  # type: ignore[arg-type]
        stdout, stderr = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{stdout}\n{stderr}"
        return stdout, stderr

    def cleanup(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
        for pid in self.pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def script(tmp_path: Path) -> Iterator[Script]:
    runner = Script(tmp_path)
    try:
        yield runner
    finally:
        runner.cleanup()
