"""Benchmark asoq's enqueue path and end-to-end throughput, with ratios rather than raw times.

1. One ``noop.delay(1)`` next to a raw ``os.write`` of the same pickled arguments to a pipe
   that a child process drains (and, for scale, ``pickle.dumps`` plus that write), interleaved
   over several rounds: the median per call of each, and the ratio delay/raw.
2. End to end: enqueue N no-op tasks as fast as possible and time until ``wait_idle()``
   returns, with concurrency 1 and 2, alternated: the median tasks/s of each, and their ratio.

The machine may be shared and noisy, so compare the ratios more than the absolute times.
Run from the repository root: ``.venv/bin/python benchmarks/enqueue.py``.
"""

from __future__ import annotations

import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # asoq from this checkout, and bench_tasks

from bench_tasks import noop  # noqa: E402

import asoq  # noqa: E402
from asoq import protocol  # noqa: E402
from asoq.client import pickle_arguments  # noqa: E402

DELAY_ROUNDS, DELAY_N = 5, 20_000
THROUGHPUT_ROUNDS, THROUGHPUT_N, WARMUP_N = 3, 100_000, 5_000
MAX_PENDING = 2 * THROUGHPUT_N  # never reached: every round starts from an idle worker
IDLE_TIMEOUT = 120.0
# Reads the pipe on its stdin until the writer closes it.
DRAIN = "import os\nwhile os.read(0, 1 << 18): pass"


def enqueue(n: int) -> float:
    """Seconds per ``noop.delay(1)`` over ``n`` calls; raises if the last task did not succeed."""
    started = time.perf_counter()
    for _ in range(n - 1):
        noop.delay(1)
    last = noop.delay(1)
    elapsed = time.perf_counter() - started
    if not asoq.wait_idle(timeout=IDLE_TIMEOUT):
        raise RuntimeError(f"the worker was not idle after {IDLE_TIMEOUT} s")
    last.result(timeout=0)
    return elapsed / n


def raw_write(fd: int, payload: bytes, n: int) -> float:
    """Seconds per ``os.write(fd, payload)`` over ``n`` calls."""
    started = time.perf_counter()
    for _ in range(n):
        os.write(fd, payload)
    return (time.perf_counter() - started) / n


def pickle_and_write(fd: int, n: int) -> float:
    """Seconds per pickling ``noop``'s arguments and writing them, over ``n`` calls."""
    started = time.perf_counter()
    for _ in range(n):
        os.write(fd, pickle.dumps(((1,), {}), pickle.HIGHEST_PROTOCOL))
    return (time.perf_counter() - started) / n


def bench_delay() -> None:
    payload = pickle_arguments(noop.name, (1,), {})
    assert payload == pickle.dumps(((1,), {}), pickle.HIGHEST_PROTOCOL)
    read_end, write_end = protocol.make_pipe()  # the same pipe size as the worker's inbox
    drain = subprocess.Popen([sys.executable, "-c", DRAIN], stdin=read_end)
    os.close(read_end)
    times: dict[str, list[float]] = {"delay": [], "raw": [], "pickle": []}
    try:
        asoq.start_worker(max_pending=MAX_PENDING)
        enqueue(DELAY_N)  # warm-up: the executor is up and has imported the task
        raw_write(write_end, payload, DELAY_N)
        for _ in range(DELAY_ROUNDS):
            times["raw"].append(raw_write(write_end, payload, DELAY_N))
            times["delay"].append(enqueue(DELAY_N))
            times["pickle"].append(pickle_and_write(write_end, DELAY_N))
    finally:
        asoq.stop_worker()
        os.close(write_end)
        drain.wait()
    delay, raw, pickled = (statistics.median(runs) for runs in times.values())
    print(f"1. noop.delay(1) vs os.write of its {len(payload)}-byte pickled arguments to a pipe")
    print(f"   {DELAY_ROUNDS} interleaved rounds of {DELAY_N:,} calls each, median per call")
    labels = {"delay": "noop.delay(1)", "raw": "os.write", "pickle": "pickle.dumps + os.write"}
    for key, runs in times.items():
        shown = ", ".join(f"{t * 1e6:.2f}" for t in runs)
        print(f"   {labels[key]:24} {statistics.median(runs) * 1e6:6.2f} us  (rounds: {shown})")
    print(f"   ratio delay/raw: {delay / raw:.1f}x   target: within 2x")
    print(f"   ratio delay/(pickle.dumps + os.write): {delay / pickled:.1f}x")


def throughput(concurrency: int) -> float:
    """Tasks/s from the first of THROUGHPUT_N enqueues until the worker is idle again."""
    asoq.start_worker(concurrency=concurrency, max_pending=MAX_PENDING)
    try:
        enqueue(WARMUP_N)
        started = time.perf_counter()
        enqueue(THROUGHPUT_N)  # returns once wait_idle() did
        return THROUGHPUT_N / (time.perf_counter() - started)
    finally:
        asoq.stop_worker()


def bench_throughput() -> None:
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(THROUGHPUT_ROUNDS):
        for concurrency, runs in rates.items():  # alternated, so both see the same noise
            runs.append(throughput(concurrency))
    one, two = (statistics.median(runs) for runs in rates.values())
    print(f"2. end-to-end throughput of {THROUGHPUT_N:,} no-op tasks, outcomes reported back")
    print(f"   {THROUGHPUT_ROUNDS} alternated runs each after {WARMUP_N:,} warm-up tasks, median")
    for concurrency, runs in rates.items():
        shown = ", ".join(f"{rate:,.0f}" for rate in runs)
        median = statistics.median(runs)
        print(f"   concurrency {concurrency}: {median:9,.0f} tasks/s  (runs: {shown})")
    print(f"   ratio concurrency 2 / 1: {two / one:.2f}x")
    print("   target: >= 50,000/s with one executor")


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, asoq from {asoq.__file__}")
    try:
        bench_delay()
        bench_throughput()
    finally:
        asoq.stop_worker()  # a no-op unless a measurement failed with a worker running


if __name__ == "__main__":
    main()
