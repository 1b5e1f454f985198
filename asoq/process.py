"""Starting ASOQ's child processes and noticing when a parent is gone.

Children are started with fork+exec (``subprocess``), never a bare ``fork()``: a serving
process is usually multi-threaded (forking it warns on Python 3.12+ and can deadlock), and an
exec'd child gets clean signal handlers, none of the server's sockets, and does not re-run the
parent's ``__main__``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

# The package's parent folder goes first on the child's path so the child imports the same
# asoq as its parent, wherever that came from (a checkout, a venv, a zipapp's extract).
_ASOQ_ROOT = str(Path(__file__).resolve().parent.parent)

# SIGINT and SIGTERM are ignored before anything is imported: Ctrl-C reaches the whole
# process group, and a child's lifetime belongs to its parent's protocol, not to the terminal.
# The first argument only names the process for ps and pgrep: "asoq-worker", "asoq-executor".
_BOOT = (
    "import signal as s; s.signal(s.SIGINT, s.SIG_IGN); s.signal(s.SIGTERM, s.SIG_IGN)\n"
    "import sys; sys.path.insert(0, sys.argv[2])\n"
    "from asoq.{module} import main; main(*map(int, sys.argv[3:]))"
)


def interpreter() -> str:
    """The Python to start children with: this one, even when embedded.

    Under uWSGI ``sys.executable`` is the uwsgi binary, so a child started with it would be a
    second server; the interpreter of the same installation is then found under
    ``sys.prefix`` (a virtual environment's ``bin/python`` included).
    """
    if os.path.basename(sys.executable).startswith("python"):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        for name in (f"python{version}", "python3", "python"):
            candidate = os.path.join(prefix, "bin", name)
            if os.access(candidate, os.X_OK):
                return candidate
    return sys.executable


def spawn(
    module: str, fds: tuple[int, ...], numbers: tuple[int, ...] = (), python: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``asoq.<module>.main(*fds, *numbers)`` in a new interpreter that inherits ``fds``."""
    command = [
        python or interpreter(),
        # The parent's -W and -X flags, as multiprocessing's spawn passes them.
        *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
        "-c",
        _BOOT.format(module=module),
        f"asoq-{module}",
        _ASOQ_ROOT,
        *map(str, fds + numbers),
    ]
    return subprocess.Popen(command, pass_fds=fds, stdin=subprocess.DEVNULL)


def watch(pid: int) -> int | None:
    """A file descriptor that turns readable when process ``pid`` ends, where the OS has one.

    ``None`` means poll :func:`alive` instead. Raises ``ProcessLookupError`` if ``pid`` is gone.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:
        return None  # a kernel before 5.3, or a sandbox that forbids it
    os.set_inheritable(fd, False)
    return fd


def alive(parent_pid: int) -> bool:
    """Whether ``parent_pid`` is still this process's parent (an orphan gets a new one)."""
    return os.getppid() == parent_pid


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (a no-op elsewhere).

    The signal fires when the parent *thread* that forked us exits, so only call this in a
    child whose parent starts children from one long-lived thread: the worker does.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
