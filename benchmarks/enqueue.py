"""Benchmark asoq's enqueue path and end-to-end throughput, with ratios rather than raw times.

1. One ``noop.delay(1)`` next to a raw ``os.write`` of the same pickled arguments to a pipe
   that a child process drains, interleaved over several rounds (median per call, and ratio).
2. End to end: enqueue N no-op tasks as fast as possible and time until ``wait_idle()``
   returns, with concurrency 1 and 2, alternated (median tasks/s of each, and ratio).

Run from the repository root: ``.venv/bin/python benchmarks/enqueue.py``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # asoq from this checkout, and bench_tasks

from bench_tasks import noop  # noqa: E402

import asoq  # noqa: E402
from asoq import protocol  # noqa: E402
from asoq.client import pickle_arguments  # noqa: E402

DELAY_ROUNDS, DELAY_N = 5, 20_000
THROUGHPUT_ROUNDS, THROUGHPUT_N, WARMUP_N = 3, 100_000, 5_000
MAX_PENDING = 2 * THROUGHPUT_N
IDLE_TIMEOUT = 120.0
# Reads a pipe on fd 0 until its writer closes it.
DRAIN = "import os\nwhile os.read(0, 1 << 18): pass"


def wait_idle() -> None:
    if not asoq.wait_idle(timeout=IDLE_TIMEOUT):
        raise RuntimeError(f"the worker was not idle after {IDLE_TIMEOUT} s")


def per_call(call: Callable[[], object], n: int) -> float:
    """Seconds per call of ``call``, over ``n`` calls."""
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n


def bench_delay() -> None:
    payload = pickle_arguments(noop.name, (1,), {})
    read_end, write_end = protocol.make_pipe()  # the same pipe size the worker's inbox gets
    drain = subprocess.Popen([sys.executable, "-c", DRAIN], stdin=read_end)
    os.close(read_end)
    delay_times: list[float] = []
    raw_times: list[float] = []
    asoq.start_worker(max_pending=MAX_PENDING)
    try:
        per_call(lambda: noop.delay(1), 1_000)  # the worker started, the name resolved
        wait_idle()
        for _ in range(DELAY_ROUNDS):
            raw_times.append(per_call(lambda: os.write(write_end, payload), DELAY_N))
            delay_times.append(per_call(lambda: noop.delay(1), DELAY_N))
            wait_idle()
    finally:
        os.close(write_end)
        drain.wait()
        asoq.stop_worker()
    delay, raw = statistics.median(delay_times), statistics.median(raw_times)
    print(f"1. delay() vs raw os.write of the same {len(payload)}-byte payload")
    print(f"   {DELAY_ROUNDS} interleaved rounds of {DELAY_N:,} calls each, median per call")
    print(f"   noop.delay(1):  {delay * 1e6:7.2f} us  (rounds: {_us(delay_times)})")
    print(f"   os.write(pipe): {raw * 1e6:7.2f} us  (rounds: {_us(raw_times)})")
    print(f"   ratio delay/raw: {delay / raw:.1f}x   target: within 2x")


def throughput(concurrency: int) -> float:
    """Tasks per second from the first enqueue of THROUGHPUT_N no-ops until all finished."""
    asoq.start_worker(concurrency=concurrency, max_pending=MAX_PENDING)
    try:
        for _ in range(WARMUP_N):
            noop.delay(1)
        wait_idle()
        started = time.perf_counter()
        for _ in range(THROUGHPUT_N):
            noop.delay(1)
        wait_idle()
        return THROUGHPUT_N / (time.perf_counter() - started)
    finally:
        asoq.stop_worker()


def bench_throughput() -> None:
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(THROUGHPUT_ROUNDS):
        for concurrency, runs in rates.items():
            runs.append(throughput(concurrency))
    one, two = (statistics.median(runs) for runs in rates.values())
    print(f"2. end-to-end throughput of {THROUGHPUT_N:,} no-op tasks, outcomes reported back")
    print(f"   {THROUGHPUT_ROUNDS} alternated runs each after {WARMUP_N:,} warm-up tasks, median")
    for concurrency, runs in rates.items():
        median = statistics.median(runs)
        shown = ", ".join(f"{rate:,.0f}" for rate in runs)
        print(f"   concurrency {concurrency}: {median:9,.0f} tasks/s  (runs: {shown})")
    print(f"   ratio concurrency 2 / 1: {two / one:.2f}x")
    print("   target: >= 50,000/s with one executor")


def _us(times: list[float]) -> str:
    return ", ".join(f"{t * 1e6:.2f}" for t in times)


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    try:
        bench_delay()
        bench_throughput()
    finally:
        asoq.stop_worker()  # a no-op unless a measurement failed with a worker running


if __name__ == "__main__":
    main()
