"""The worker seen from the enqueuing process: outcomes, failures, supervision, bounds."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import asoq
from asoq import (
    QueueFull,
    Status,
    TaskCrashed,
    TaskFailed,
    TaskLost,
    TaskTimedOut,
    WorkerError,
)
from asoq import runtime as asoq_runtime
from asoq.result import RemoteTraceback
from tests import tasks
from tests.conftest import descendants, read_records, running, wait_for


def worker_pid() -> int:
    client = asoq_runtime._client
    assert client is not None
    return client.process.pid


def test_a_task_runs_in_an_executor_under_the_worker_and_returns_its_value() -> None:
    handle = tasks.whoami.delay()
    executor, worker = handle.result(timeout=10)
    assert worker == worker_pid() != os.getpid()
    assert executor != worker and executor in descendants(os.getpid())
    assert handle.status is Status.SUCCEEDED and handle.done() and handle.attempts == 1
    assert tasks.add.delay(2, 3).result(timeout=10) == 5
    assert tasks.async_add.delay(2, 5).result(timeout=10) == 7
    assert tasks.noop.delay().result(timeout=10) is None
    assert tasks.process_name.delay().result(timeout=10) == "asoq-executor"  # in its logs too


def test_the_handle_has_an_id_and_a_status_that_moves_on(tmp_path: Path) -> None:
    release = tmp_path / "go"
    first = tasks.hold.delay(str(tmp_path / "log"), str(release))
    second = tasks.noop.delay()
    assert first.id != second.id and first.id.endswith("-1") and second.id.endswith("-2")
    wait_for(lambda: first.status is Status.RUNNING, what="the first task to run")
    assert second.status is Status.QUEUED
    with pytest.raises(TimeoutError, match="not done after 0.05 s"):
        second.result(timeout=0.05)
    release.touch()
    assert second.result(timeout=10) is None and first.status is Status.SUCCEEDED


def test_an_error_comes_back_with_its_remote_traceback_and_is_logged(
    asoq_logs: pytest.LogCaptureFixture,
) -> None:
    handle = tasks.fail.delay("no luck")
    with pytest.raises(ValueError, match="no luck") as raised:
        handle.result(timeout=10)
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert 'tasks.py", line' in str(raised.value.__cause__)
    assert handle.status is Status.FAILED and isinstance(handle.exception(), ValueError)
    wait_for(lambda: any(r.levelno == logging.ERROR for r in asoq_logs.records))
    error = next(r for r in asoq_logs.records if r.levelno == logging.ERROR)
    assert error.name == "asoq.worker"
    assert f"Task tests.tasks:fail[{handle.id}] raised ValueError: no luck" in error.getMessage()
    assert error.exc_text and "raise ValueError(message)" in error.exc_text
    # The worker goes on.
    assert tasks.add.delay(1, 1).result(timeout=10) == 2


def test_an_error_that_cannot_be_rebuilt_becomes_task_failed() -> None:
    with pytest.raises(TaskFailed, match="raised StubbornError: 7: cannot be rebuilt") as raised:
        tasks.fail_stubbornly.delay().result(timeout=10)
    assert raised.value.exception_type == "tests.tasks.StubbornError"
    assert "StubbornError" in raised.value.traceback


def test_a_result_that_cannot_be_pickled_fails_the_task_clearly() -> None:
    with pytest.raises(TypeError, match="returned a function, which cannot be pickled"):
        tasks.unpicklable_result.delay().result(timeout=10)


@pytest.mark.parametrize(
    ("crash", "cause"),
    [
        (tasks.exit_hard, "exited with code 3"),
        (tasks.kill_self, "was killed by SIGKILL"),
        (tasks.segfault, "was killed by SIGSEGV"),
    ],
)
def test_a_task_that_kills_its_process_costs_only_itself(
    crash: asoq.Task[[], None], cause: str, asoq_logs: pytest.LogCaptureFixture
) -> None:
    before = tasks.whoami.delay().result(timeout=10)[0]
    handle = crash.delay()
    after = tasks.whoami.delay()
    with pytest.raises(TaskCrashed, match=f"crashed: its executor {cause}"):
        handle.result(timeout=10)
    assert after.result(timeout=10)[0] != before, "the executor is replaced"
    messages = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.ERROR]
    assert f"Task {crash.name}[{handle.id}] crashed: its executor {cause}" in messages


def test_a_task_over_its_time_limit_is_stopped_and_its_executor_replaced(tmp_path: Path) -> None:
    log = tmp_path / "log"
    handle = tasks.slow.delay(str(log))
    follower = tasks.whoami.delay()
    with pytest.raises(TaskTimedOut, match="ran past its time limit of 0.5 s and was stopped"):
        handle.result(timeout=10)
    (slow_run,) = read_records(log)
    assert follower.result(timeout=10)[0] != slow_run["pid"]
    assert not running(int(slow_run["pid"]))  # type: ignore[call-overload]


def test_retries_run_a_failing_task_again_until_it_succeeds(tmp_path: Path) -> None:
    log = tmp_path / "runs"
    handle = tasks.flaky.using(retries=2, retry_backoff=0).delay(str(log), 2)
    assert handle.result(timeout=10) == 3 and handle.attempts == 3


def test_retries_give_up_after_the_last_one_and_wait_longer_each_time(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "runs"
    handle = tasks.flaky.using(retries=2, retry_backoff=0.1).delay(str(log), 5)
    with pytest.raises(RuntimeError, match="run 3 fails"):
        handle.result(timeout=10)
    times = [float(r["time"]) for r in read_records(log)]  # type: ignore[arg-type]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2  # backoff doubles
    retries = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.WARNING]
    assert any("retry 1 of 2 in 0.1 s" in m for m in retries)
    assert any("retry 2 of 2 in 0.2 s" in m for m in retries)


def test_a_crash_is_retried_when_asked() -> None:
    handle = tasks.exit_hard.using(retries=1, retry_backoff=0).delay()
    with pytest.raises(TaskCrashed):
        handle.result(timeout=10)
    assert handle.attempts == 2


def test_higher_priority_runs_first_and_equal_priority_in_call_order(tmp_path: Path) -> None:
    log, release = tmp_path / "log", tmp_path / "go"
    tasks.hold.delay(str(log), str(release), "blocker")
    wait_for(lambda: read_records(log), what="the blocker to start")
    for value, priority in [("low", -5), ("mid-1", 0), ("high", 50), ("mid-2", 0)]:
        tasks.record.using(priority=priority).delay(str(log), value)
    release.touch()
    assert asoq.wait_idle(timeout=10)
    assert [r["value"] for r in read_records(log)] == ["blocker", "high", "mid-1", "mid-2", "low"]


def test_countdown_and_eta_hold_a_task_back(tmp_path: Path) -> None:
    log = tmp_path / "log"
    enqueued = time.time()
    tasks.record.using(countdown=0.3).delay(str(log), "countdown")
    eta = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.2)
    tasks.record.using(eta=eta).delay(str(log), "eta")
    tasks.record.delay(str(log), "now")
    assert asoq.wait_idle(timeout=10)
    records = {r["value"]: float(r["time"]) for r in read_records(log)}  # type: ignore[arg-type]
    assert list(records) == ["now", "eta", "countdown"]
    assert records["countdown"] >= enqueued + 0.3 and records["eta"] >= eta.timestamp()


def test_concurrency_runs_tasks_side_by_side(tmp_path: Path) -> None:
    asoq.start_worker(concurrency=2)
    log, release = tmp_path / "log", tmp_path / "go"
    tasks.hold.delay(str(log), str(release), 1)
    tasks.hold.delay(str(log), str(release), 2)
    # Both start while neither can finish: only two executors can do that.
    wait_for(lambda: len(read_records(log)) == 2, what="both tasks to start")
    assert len({r["pid"] for r in read_records(log)}) == 2
    release.touch()
    assert asoq.wait_idle(timeout=10)


def test_the_pending_bound_raises_at_once_and_lifts_when_tasks_finish(tmp_path: Path) -> None:
    asoq.start_worker(max_pending=3)
    log, release = tmp_path / "log", tmp_path / "go"
    tasks.hold.delay(str(log), str(release))
    tasks.noop.delay()
    tasks.noop.delay()
    started = time.monotonic()
    with pytest.raises(QueueFull, match="'tests.tasks:noop' not enqueued: 3 tasks are pending"):
        tasks.noop.delay()
    assert time.monotonic() - started < 1, "it raises, it does not wait"
    release.touch()
    assert asoq.wait_idle(timeout=10)
    assert tasks.add.delay(1, 2).result(timeout=10) == 3


def test_start_worker_is_idempotent_and_thread_safe() -> None:
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        asoq.start_worker()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    client = asoq_runtime._client
    assert client is not None
    asoq.start_worker()
    assert asoq_runtime._client is client
    assert [p for p in descendants(os.getpid()) if p == client.process.pid] == [client.process.pid]
    with pytest.raises(WorkerError, match="already runs with other options"):
        asoq.start_worker(concurrency=2)


def test_stop_worker_runs_everything_it_holds_then_stops(tmp_path: Path) -> None:
    log = tmp_path / "log"
    handles = [tasks.record.delay(str(log), i) for i in range(50)]
    pid = worker_pid()
    assert asoq.stop_worker(timeout=10) is True
    assert sorted(r["value"] for r in read_records(log)) == list(range(50))  # type: ignore[type-var]
    assert all(h.status is Status.SUCCEEDED for h in handles)
    assert not running(pid)


def test_stop_worker_drops_and_logs_what_outlives_its_timeout(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    stuck = tasks.hold.delay(str(log), str(tmp_path / "never"))
    queued = tasks.noop.delay()
    wait_for(lambda: read_records(log), what="the stuck task to start")
    assert asoq.stop_worker(timeout=0.2) is False
    for handle in (stuck, queued):
        dropped = "dropped: still unfinished 0.2 s after its process asked it to stop"
        with pytest.raises(TaskLost, match=dropped):
            handle.result(timeout=1)
    errors = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.ERROR]
    assert any(f"Task tests.tasks:hold[{stuck.id}] dropped" in m for m in errors)
    assert any(f"Task tests.tasks:noop[{queued.id}] dropped" in m for m in errors)


def test_wait_idle_times_out_while_busy_and_returns_once_done(tmp_path: Path) -> None:
    assert asoq.wait_idle(timeout=0) is True  # nothing enqueued yet
    release = tmp_path / "go"
    tasks.hold.delay(str(tmp_path / "log"), str(release))
    assert asoq.wait_idle(timeout=0.05) is False
    release.touch()
    assert asoq.wait_idle(timeout=10) is True


def test_eager_mode_runs_inline_and_errors_propagate() -> None:
    asoq.start_worker(eager=True)
    handle = tasks.whoami.delay()
    assert handle.result(timeout=0)[0] == os.getpid() and handle.status is Status.SUCCEEDED
    with pytest.raises(ValueError, match="eager boom"):
        tasks.fail.delay("eager boom")
    with pytest.raises(asoq.SerializationError):
        tasks.echo.delay(threading.Lock())  # type: ignore[arg-type]
    assert asoq.wait_idle(timeout=0) and not descendants(os.getpid())


def test_a_payload_far_larger_than_a_pipe_buffer_goes_through() -> None:
    payload = os.urandom(8 * 1024 * 1024)
    assert tasks.echo.delay(payload).result(timeout=30) == len(payload)


def test_after_response_outside_a_request_enqueues_at_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    tasks.record.after_response(str(log), "now")
    assert asoq.wait_idle(timeout=10) and read_records(log)[0]["value"] == "now"


def test_a_killed_worker_is_noticed_and_replaced_at_the_next_enqueue(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    release = tmp_path / "go"
    held = tasks.hold.delay(str(tmp_path / "log"), str(release))
    old = worker_pid()
    os.kill(old, signal.SIGKILL)
    with pytest.raises(TaskLost, match="the worker died"):
        held.result(timeout=10)
    assert tasks.add.delay(1, 2).result(timeout=10) == 3 and worker_pid() != old
    errors = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.ERROR]
    assert any(f"asoq worker {old} ended unexpectedly" in m and "1 task(s)" in m for m in errors)
    release.touch()


def test_each_step_is_logged_on_the_asoq_logger(asoq_logs: pytest.LogCaptureFixture) -> None:
    handle = tasks.add.delay(1, 2)
    handle.result(timeout=10)
    pid = worker_pid()
    asoq.stop_worker(timeout=10)
    seen = [(r.name, r.levelname, r.getMessage()) for r in asoq_logs.records]
    task = f"Task tests.tasks:add[{handle.id}]"
    assert ("asoq", "DEBUG", f"{task} enqueued") in seen
    assert ("asoq.worker", "DEBUG", f"{task} started (attempt 1)") in seen
    assert any(m.startswith(f"{task} succeeded in ") for _, level, m in seen if level == "DEBUG")
    assert ("asoq.worker", "INFO", f"asoq worker {pid} stopped") in seen
    assert any(
        m.startswith(f"asoq worker {pid} started for process {os.getpid()}") for *_, m in seen
    )
    forwarded = next(r for r in asoq_logs.records if r.name == "asoq.worker")
    assert forwarded.process == pid and forwarded.processName == "asoq-worker"


def test_an_executor_killed_from_outside_mid_task_costs_only_that_task(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    held = tasks.hold.delay(str(log), str(tmp_path / "never"))
    after = tasks.add.delay(2, 2)
    wait_for(lambda: read_records(log), what="the task to start")
    os.kill(int(read_records(log)[0]["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
    with pytest.raises(TaskCrashed, match="its executor was killed by SIGKILL"):
        held.result(timeout=10)
    assert after.result(timeout=10) == 4
    errors = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.ERROR]
    assert f"Task tests.tasks:hold[{held.id}] crashed: its executor was killed by SIGKILL" in errors


def test_a_task_module_that_fails_to_import_in_the_executor_fails_that_task(
    asoq_logs: pytest.LogCaptureFixture,
) -> None:
    from tests import broken_in_executor

    handle = broken_in_executor.unreachable.delay()
    with pytest.raises(ImportError, match="refuses to load in an executor"):
        handle.result(timeout=10)
    assert tasks.add.delay(1, 1).result(timeout=10) == 2
    errors = [r for r in asoq_logs.records if r.levelno == logging.ERROR]
    (failure,) = [r for r in errors if handle.id in r.getMessage()]
    assert "tests.broken_in_executor:unreachable" in failure.getMessage()
    assert failure.exc_text and "refuses to load" in failure.exc_text


def test_a_stopped_worker_makes_enqueue_fail_clearly_not_hang(tmp_path: Path) -> None:
    asoq.start_worker(max_pending=10**6)
    assert tasks.add.delay(1, 1).result(timeout=10) == 2
    pid = worker_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        accepted = []
        with pytest.raises(QueueFull, match=f"asoq worker {pid} has not read its pipe for 2 s"):
            # Frames under PIPE_BUF go into a pipe whole or not at all; 1 MiB holds ~500.
            for _ in range(2000):
                accepted.append(tasks.echo.delay(b"x" * 2048))
        assert 0 < len(accepted) < 2000
    finally:
        os.kill(pid, signal.SIGCONT)
    assert asoq.wait_idle(timeout=30)
    assert all(handle.result(timeout=0) == 2048 for handle in accepted), "none was cut"


def test_a_task_can_enqueue_tasks_whose_outcomes_are_logged(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    ids = tasks.fan_out.delay(str(log), 3).result(timeout=10)
    wait_for(lambda: len(read_records(log)) == 3, what="the children to run")
    assert sorted(r["value"] for r in read_records(log)) == ["child 0", "child 1", "child 2"]
    assert len(set(ids)) == 3
    failed_id = tasks.fail_in_a_child.delay().result(timeout=10)
    expected = f"Task tests.tasks:fail[{failed_id}] raised ValueError: child failure"
    wait_for(lambda: any(r.getMessage() == expected for r in asoq_logs.records))
    debug = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.DEBUG]
    assert f"Task tests.tasks:record[{ids[0]}] enqueued by a task" in debug
    with pytest.raises(WorkerError, match="enqueued from inside a task: its outcome is logged"):
        tasks.wait_for_a_child.delay().result(timeout=10)
    assert asoq.wait_idle(timeout=10)


def test_tasks_enqueued_by_a_task_are_bounded_by_max_pending_too(
    tmp_path: Path, asoq_logs: pytest.LogCaptureFixture
) -> None:
    asoq.start_worker(max_pending=5)
    log = tmp_path / "log"
    ids = tasks.fan_out.delay(str(log), 20).result(timeout=10)
    assert asoq.stop_worker(timeout=10)  # what was queued runs
    errors = [r.getMessage() for r in asoq_logs.records if r.levelno == logging.ERROR]
    dropped = [m for m in errors if "dropped: enqueued by a task while 5 tasks are pending" in m]
    assert len(dropped) == 15 and len(read_records(log)) == 5
    assert all(any(f"[{i}]" in m for m in dropped) for i in ids[5:])
