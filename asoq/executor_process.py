"""The worker's handle on one executor process: its pipes, the jobs it was sent, its end.

The worker sends an executor a few jobs ahead when they are known to be short; the first of
``in_flight`` is the one running, and it started when the outcome before it arrived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import deque
from typing import Any

from . import process, protocol
from .protocol import DONE_HEAD, FrameReader, Sink
from .queue import Job

# An idle executor told to exit gets this long before it is killed.
EXIT_GRACE = 2.0


class ExecutorProcess:
    def __init__(self, proc: subprocess.Popen[bytes], to_fd: int, from_fd: int) -> None:
        self.process = proc
        self.pid: int = proc.pid
        self.sink = Sink(to_fd)
        self.output = from_fd
        try:
            self.pidfd = process.watch(proc.pid)
        except ProcessLookupError:
            self.pidfd = None  # already gone: its pipe's end says so
        self.reader = FrameReader()
        self.in_flight: deque[tuple[Job, float]] = deque()  # (job, expected seconds)
        self.load = 0.0  # expected seconds of work sent and not done
        self.started_at = 0.0  # when in_flight[0] started, as time.monotonic()
        self.ready = False
        self.killed_for = ""
        self.gone = False
        self.announced = (0, 0)  # (seq, attempt) of the last run the client was told of

    @classmethod
    def start(cls, config: dict[str, Any], python: str | None) -> ExecutorProcess:
        """Start an executor, its config (sys.path, setup hooks) queued as its first frame."""
        to_read, to_write = protocol.make_pipe()
        from_read, from_write = protocol.make_pipe()
        try:
            proc = process.spawn("executor", (to_read, from_write), (os.getpid(),), python)
        finally:
            os.close(to_read)
            os.close(from_write)
        os.set_blocking(to_write, False)
        os.set_blocking(from_read, False)
        executor = cls(proc, to_write, from_read)
        executor.sink.add(protocol.pickled_frame(protocol.CONFIG, config))
        return executor

    def assign(self, job: Job, cost: float, now: float) -> bool:
        """Send ``job``; return whether it runs at once (nothing was in flight)."""
        self.in_flight.append((job, cost))
        self.load += cost
        self.sink.add(job.frame)
        if len(self.in_flight) == 1:
            self.started_at = now
            return True
        return False

    def finish(self, frame: bytes, now: float) -> tuple[Job, bool, float]:
        """Take the job a DONE frame reports: the oldest; the next one starts now."""
        _, _, seq, ok, duration = DONE_HEAD.unpack_from(frame)
        job, cost = self.in_flight.popleft()
        assert job.seq == seq, "an executor reports its tasks in the order it got them"
        self.load = self.load - cost if self.in_flight else 0.0
        self.started_at = now
        return job, ok, duration

    def running(self) -> Job | None:
        return self.in_flight[0][0] if self.in_flight else None

    def time_limit_end(self) -> float:
        """When the running job's time limit ends (``time.monotonic()``), or 0 if none."""
        job = self.running()
        return self.started_at + job.time_limit if job and job.time_limit else 0.0

    def read(self) -> list[tuple[int, bytes]] | None:
        """Frames readable now; ``None`` once the executor's end of the pipe is closed."""
        try:
            data = os.read(self.output, protocol.READ_SIZE)
        except BlockingIOError:
            return []
        return self.reader.feed(data) if data else None

    def read_the_rest(self) -> list[tuple[int, bytes]]:
        """Every frame it wrote before it ended."""
        frames = []
        while True:
            try:
                data = os.read(self.output, protocol.READ_SIZE)
            except OSError:
                break
            if not data:
                break
            frames += self.reader.feed(data)
        return frames

    def reap(self) -> int:
        """Wait for the process to end (killing it if it closed its pipe but lives on), close
        its descriptors, and return its exit status."""
        if self.process.poll() is None:
            self.process.kill()
        returncode = self.process.wait()
        for fd in (self.output, self.pidfd, self.sink.fd):
            if fd is not None:
                os.close(fd)
        return returncode

    def stop(self, deadline: float) -> None:
        """End its input (an idle executor then returns) and wait until ``deadline``."""
        os.close(self.sink.fd)
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def exit_cause(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"
