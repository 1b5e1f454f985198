"""The worker process: owns the in-memory queue, runs no user code, supervises executors.

One worker serves the process that started it. It reads task frames from that process's pipe,
keeps them by priority and due time, hands them to executor processes, and reports each
outcome back. It restarts an executor that dies or runs past a task's time limit (only the
task it was running fails), and retries failed tasks that asked for it. When its parent is gone
(noticed through a pidfd, since many exit paths skip ``atexit``), on SIGTERM, or when asked to
stop, it runs what it holds within a deadline, logs every task it must drop, and exits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import selectors
import signal
import sys
import time
from typing import Any

from . import logs, process, protocol
from .executor_process import EXIT_GRACE, ExecutorProcess, exit_cause
from .protocol import (
    DONE_HEAD,
    Failure,
    FrameReader,
    Sink,
)
from .queue import Job, JobQueue

logger = logging.getLogger("asoq.worker")

# A ready executor may be sent more than one task when they are known to be short: at most
# this much expected work waits in its pipe, which keeps a no-op task's round trip off the
# critical path without letting a later, higher-priority task wait long behind prefetched ones.
PREFETCH_BUDGET = 0.002
MAX_PREFETCH = 256
# Without a pidfd the parent is polled this often.
PARENT_POLL = 0.25
BOOT_FAILURES_BEFORE_GIVING_UP = 3
# The worker's exit status when it had to drop tasks, so stop_worker() can tell.
DROPPED_EXIT_CODE = 3


class Worker:
    def __init__(self, config: dict[str, Any], inbox: int, outbox: int, parent_pid: int) -> None:
        self.config = config
        self.token: str = config["token"]
        self.queue = JobQueue()
        self.selector = selectors.DefaultSelector()
        self.inbox = inbox
        self.inbox_reader = FrameReader()
        self.outbox = Sink(outbox)
        self.connected = True
        self.log_handler = logs.ForwardingHandler(self.outbox)
        self.parent_pid = parent_pid
        self.executors: list[ExecutorProcess] = []
        self.expected: dict[str, float] = {}  # a moving average of run time per task name
        self.names: dict[bytes, str] = {}
        self.closing = ""  # why the worker is draining, if it is
        self.drain_time = 0.0
        self.deadline = math.inf
        self.restart_at = math.inf
        self.boot_failures = 0
        self.dropped = 0
        self.writing: set[int] = set()
        os.set_blocking(inbox, False)
        os.set_blocking(outbox, False)
        self.selector.register(inbox, selectors.EVENT_READ, self.on_inbox)
        try:
            self.parent_fd = process.watch(parent_pid)
        except ProcessLookupError:
            self.parent_fd = None
            self.parent_pid = -1  # already gone: the first loop turn starts draining
        if self.parent_fd is not None:
            self.selector.register(self.parent_fd, selectors.EVENT_READ, self.on_parent_gone)
        wake_read, wake_write = os.pipe()
        for fd in (wake_read, wake_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
        self.selector.register(wake_read, selectors.EVENT_READ, lambda: self.on_signal(wake_read))

    # The loop.

    def run(self) -> None:
        for _ in range(self.config["concurrency"]):
            self.start_executor()
        logger.info(
            "asoq worker %d started for process %d with %d executor(s)",
            os.getpid(),
            self.parent_pid,
            self.config["concurrency"],
        )
        try:
            self.loop()
        finally:
            self.shutdown()

    def loop(self) -> None:
        while True:
            now = time.monotonic()
            if self.parent_fd is None and self.connected and not process.alive(self.parent_pid):
                self.on_parent_gone()
            if any(executor.pidfd is None for executor in self.executors):
                self.poll_executors()
            if now >= self.restart_at:
                self.restart_at = math.inf
                self.start_executor()
            next_due = self.queue.release_due(now)
            self.dispatch(now)
            wake = min(next_due or math.inf, self.deadline, self.restart_at)
            for executor in self.executors:
                limit_end = executor.time_limit_end()
                if limit_end and not executor.killed_for:
                    if now > limit_end:
                        executor.killed_for = "timeout"
                        executor.process.kill()
                    else:
                        wake = min(wake, limit_end)
            self.flush()
            if self.closing:
                if not self.queue and not any(e.in_flight for e in self.executors):
                    return
                if now >= self.deadline:
                    self.drop_everything()
                    return
            timeout = None if wake == math.inf else max(0.0, wake - now)
            if self.parent_fd is None or any(e.pidfd is None for e in self.executors):
                timeout = PARENT_POLL if timeout is None else min(timeout, PARENT_POLL)
            for key, _ in self.selector.select(timeout):
                key.data()

    def dispatch(self, now: float) -> None:
        queue = self.queue
        while queue.has_ready():
            job = queue.peek()
            cost = self.expected.get(job.name, math.inf)
            chosen = None
            for executor in self.executors:
                if not executor.ready or executor.killed_for:
                    continue
                if not executor.in_flight:
                    chosen = executor
                    break
                if (
                    len(executor.in_flight) < MAX_PREFETCH
                    and executor.load + cost <= PREFETCH_BUDGET
                    and (chosen is None or executor.load < chosen.load)
                ):
                    chosen = executor
            if chosen is None:
                return
            queue.pop()
            if chosen.assign(job, cost, now):
                self.started(job)

    def flush(self) -> None:
        if self.connected:
            self.announce_running()
        sinks = [e.sink for e in self.executors if e.sink.buffer]
        if self.connected and self.outbox.buffer:
            sinks.append(self.outbox)
        for sink in sinks:
            try:
                done = sink.flush()
            except (BrokenPipeError, ConnectionResetError):
                if sink is self.outbox:
                    self.on_parent_gone()
                sink.drop()
                continue  # an executor's end shows up as its exit event
            if done:
                if sink.fd in self.writing:
                    self.writing.discard(sink.fd)
                    self.selector.unregister(sink.fd)
            elif sink.fd not in self.writing:
                self.writing.add(sink.fd)
                self.selector.register(sink.fd, selectors.EVENT_WRITE, lambda: None)

    def announce_running(self) -> None:
        """Tell the client which task each executor runs now, once per flush.

        A task that started and finished since the last flush is never announced: its
        FINISHED frame says all, and short tasks would otherwise double the client's reading.
        """
        for executor in self.executors:
            job = executor.running()
            if job and not job.origin and executor.announced != (job.seq, job.attempt):
                executor.announced = (job.seq, job.attempt)
                frame = protocol.STARTED_FRAME
                self.outbox.add(frame.pack(frame.size - 4, protocol.STARTED, job.seq, job.attempt))

    # Events.

    def on_inbox(self) -> None:
        try:
            data = os.read(self.inbox, protocol.READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(self.inbox)
            self.on_parent_gone()  # every process that could write to us has ended
            return
        self.take(self.inbox_reader.feed(data))

    def take(self, frames: list[tuple[int, bytes]]) -> None:
        for kind, frame in frames:
            if kind == protocol.TASK:
                self.accept(frame)
            elif kind == protocol.STOP:
                timeout = protocol.STOP_FRAME.unpack_from(frame)[2]
                self.close("its process asked it to stop", timeout)

    def accept(self, frame: bytes, origin: str = "") -> None:
        head = protocol.read_task(frame)
        name = self.names.get(head.name)
        if name is None:
            name = self.names[head.name] = head.name.decode()
        job = Job(
            head.seq,
            name,
            head.priority,
            head.time_limit,
            head.retries,
            head.retry_backoff,
            frame,
            origin=origin,
        )
        if origin:
            # The client bounds its own tasks; these only the worker sees, so it bounds them.
            if len(self.queue) >= self.config["max_pending"]:
                logger.error(
                    "Task %s[%s] dropped: enqueued by a task while %d tasks are pending "
                    "(max_pending)",
                    name,
                    self.id(job),
                    len(self.queue),
                )
                return
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("Task %s[%s] enqueued by a task", name, self.id(job))
        if head.due:
            self.queue.push(job, time.monotonic() + max(0.0, head.due - time.time()))
        else:
            self.queue.push(job)

    def on_parent_gone(self) -> None:
        if self.parent_fd is not None:
            self.selector.unregister(self.parent_fd)
            os.close(self.parent_fd)
            self.parent_fd = None
        if not self.connected:
            return
        self.connected = False
        # Whatever the parent wrote before it ended is still in the pipe: take all of it.
        while True:
            try:
                data = os.read(self.inbox, protocol.READ_SIZE)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self.take(self.inbox_reader.feed(data))
        self.disconnect()
        self.close(f"its process {self.parent_pid} ended", self.config["drain_timeout"])

    def disconnect(self) -> None:
        """Nobody reads the outbox any more: log records still in it go to stderr instead."""
        self.connected = False
        self.log_handler.stop_forwarding()
        self.outbox.drop()

    def on_signal(self, fd: int) -> None:
        try:
            received = os.read(fd, 64)
        except BlockingIOError:
            return
        if signal.SIGTERM in received:
            self.close("it got SIGTERM", self.config["drain_timeout"])

    def close(self, why: str, timeout: float) -> None:
        if self.closing:
            self.deadline = min(self.deadline, time.monotonic() + timeout)
            return
        self.closing = why
        self.drain_time = timeout
        self.deadline = time.monotonic() + timeout
        logger.info(
            "asoq worker %d: %s; running the %d task(s) it holds for up to %g s",
            os.getpid(),
            why,
            len(self.queue) + sum(len(e.in_flight) for e in self.executors),
            timeout,
        )

    def on_executor_output(self, executor: ExecutorProcess) -> None:
        frames = executor.read()
        if frames is None:
            self.on_executor_exit(executor)
        else:
            self.read_outcomes(executor, frames)

    def read_outcomes(self, executor: ExecutorProcess, frames: list[tuple[int, bytes]]) -> None:
        now = time.monotonic()
        for kind, frame in frames:
            if kind == protocol.DONE:
                self.done(executor, frame, now)
            elif kind == protocol.TASK:
                self.accept(frame, f"{self.token}-{executor.pid}")
            elif kind == protocol.READY:
                executor.ready = True
                self.boot_failures = 0

    def done(self, executor: ExecutorProcess, frame: bytes, now: float) -> None:
        job, ok, duration = executor.finish(frame, now)
        previous = self.expected.get(job.name)
        self.expected[job.name] = duration if previous is None else 0.8 * previous + 0.2 * duration
        following = executor.running()
        if following is not None:
            self.started(following)
        if ok:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("Task %s[%s] succeeded in %.6f s", job.name, self.id(job), duration)
            self.report(job, True, frame[DONE_HEAD.size :])
        else:
            self.failed(job, Failure.decode(memoryview(frame)[DONE_HEAD.size :]), now)

    def on_executor_exit(self, executor: ExecutorProcess) -> None:
        if executor.gone:
            return
        executor.gone = True
        # Outcomes written before the end are still in the pipe: count them first.
        self.read_outcomes(executor, executor.read_the_rest())
        for fd in (executor.output, executor.pidfd):
            if fd is not None:
                self.selector.unregister(fd)
        if executor.sink.fd in self.writing:
            self.writing.discard(executor.sink.fd)
            self.selector.unregister(executor.sink.fd)
        returncode = executor.reap()
        self.executors.remove(executor)
        now = time.monotonic()
        if executor.in_flight:
            job = executor.in_flight.popleft()[0]
            if executor.killed_for == "timeout":
                failure = Failure(
                    "timeout",
                    "",
                    f"ran past its time limit of {job.time_limit:g} s and was stopped",
                )
            else:
                failure = Failure("crashed", "", f"crashed: its executor {exit_cause(returncode)}")
            self.failed(job, failure, now)
            self.queue.push_front(job for job, _ in executor.in_flight)
        if not executor.ready:
            self.boot_failures += 1
            logger.error(
                "asoq executor %d %s before it was ready", executor.pid, exit_cause(returncode)
            )
            if self.boot_failures >= BOOT_FAILURES_BEFORE_GIVING_UP:
                for job in self.queue.take_all():
                    self.failed(job, Failure("crashed", "", "failed: executors cannot start"), now)
        if self.closing and not self.queue:
            return
        if executor.ready:
            self.start_executor()
        else:
            delay = min(5.0, 0.1 * 2**self.boot_failures)
            self.restart_at = min(self.restart_at, now + delay)

    # Jobs.

    def id(self, job: Job) -> str:
        return f"{job.origin or self.token}-{job.seq}"

    def started(self, job: Job) -> None:
        job.attempt += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Task %s[%s] started (attempt %d)", job.name, self.id(job), job.attempt)

    def failed(self, job: Job, failure: Failure, now: float) -> None:
        extra = {"asoq_traceback": failure.traceback}
        if job.attempt <= job.retries:
            delay = job.retry_backoff * 2 ** (job.attempt - 1)
            logger.warning(
                "Task %s[%s] %s; retry %d of %d in %g s",
                job.name,
                self.id(job),
                failure.message,
                job.attempt,
                job.retries,
                delay,
                extra=extra,
            )
            self.queue.push(job, now + delay if delay else 0.0)
            if self.connected and not job.origin:
                self.outbox.add(protocol.seq_frame(protocol.RETRYING, job.seq))
            return
        logger.error("Task %s[%s] %s", job.name, self.id(job), failure.message, extra=extra)
        self.report(job, False, failure.encode())

    def report(self, job: Job, ok: bool, payload: bytes) -> None:
        if self.connected and not job.origin:
            head = protocol.FINISHED_HEAD
            self.outbox.add(
                head.pack(head.size - 4 + len(payload), protocol.FINISHED, job.seq, ok, job.attempt)
            )
            self.outbox.add(payload)

    def drop_everything(self) -> None:
        why = f"dropped: still unfinished {self.drain_time:g} s after {self.closing}"
        for executor in self.executors:
            executor.killed_for = "drain"
            executor.process.kill()
            dropped = [job for job, _ in executor.in_flight]
            executor.in_flight.clear()
            self._drop(dropped, why)
        self._drop(list(self.queue.take_all()), why)

    def _drop(self, jobs: list[Job], why: str) -> None:
        self.dropped += len(jobs)
        for job in jobs:
            logger.error("Task %s[%s] %s", job.name, self.id(job), why)
            self.report(job, False, Failure("lost", "", f"was {why}").encode())

    # Executors.

    def start_executor(self) -> None:
        config = {name: self.config[name] for name in ("sys_path", "setup", "token")}
        executor = ExecutorProcess.start(config, self.config["python"])
        self.executors.append(executor)
        self.selector.register(
            executor.output, selectors.EVENT_READ, lambda: self.on_executor_output(executor)
        )
        if executor.pidfd is not None:
            self.selector.register(
                executor.pidfd, selectors.EVENT_READ, lambda: self.on_executor_exit(executor)
            )

    def poll_executors(self) -> None:
        for executor in list(self.executors):
            if executor.process.poll() is not None:
                self.on_executor_exit(executor)

    def shutdown(self) -> None:
        deadline = time.monotonic() + EXIT_GRACE
        for executor in self.executors:
            executor.stop(deadline)
        logger.info("asoq worker %d stopped", os.getpid())
        if self.connected and not process.alive(self.parent_pid):
            self.disconnect()  # it may have ended without our noticing: nobody would read these
        if self.connected:
            os.set_blocking(self.outbox.fd, True)
            with contextlib.suppress(OSError):
                protocol.write_all(self.outbox.fd, bytes(self.outbox.buffer))


def main(inbox: int, outbox: int, parent_pid: int) -> None:
    reader = FrameReader()
    frames = protocol.read_first(inbox, reader)
    if not frames:
        return  # the parent died before it could say anything
    config: dict[str, Any] = protocol.read_pickled(frames[0][1])
    worker = Worker(config, inbox, outbox, parent_pid)
    package_logger = logging.getLogger("asoq")
    package_logger.setLevel(config["log_level"])
    package_logger.propagate = False
    package_logger.addHandler(worker.log_handler)
    worker.inbox_reader = reader
    worker.take(frames[1:])
    worker.run()
    if worker.dropped:
        sys.exit(DROPPED_EXIT_CODE)
