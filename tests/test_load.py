"""Load: many threads enqueueing while requests are served, every task run exactly once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Script, read_records

THREADS, PER_THREAD, REQUESTS = 8, 1250, 200

LOAD = """
import gc, http.client, json, os, sys, threading
from werkzeug.serving import make_server
import asoq
from asoq.wsgi import AsoqMiddleware
from tests import tasks
from tests.matrix_app import app

threads, per_thread, requests = map(int, sys.argv[1:4])
log = os.environ["MATRIX_LOG"]


def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


asoq.start_worker(max_pending=2 * threads * per_thread)
server = make_server("127.0.0.1", 0, AsoqMiddleware(app), threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
# Warm every path once, so what is measured is what a burst leaves behind.
for n in range(2):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    connection.request("GET", f"/enqueue?id={-1 - n}&how={('delay', 'after_response')[n]}")
    connection.getresponse().read()
    connection.close()
tasks.record.delay(log, {"id": -3, "how": "thread"})
assert asoq.wait_idle(timeout=60)
gc.collect()
before = rss()


def enqueue(thread):
    for i in range(per_thread):
        tasks.record.delay(log, {"id": thread * per_thread + i, "how": "thread"})


def serve_requests():
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    for n in range(requests):
        how = "delay" if n % 2 else "after_response"
        connection.request("GET", f"/enqueue?id={10**6 + n}&how={how}")
        assert connection.getresponse().read()
    connection.close()


workers = [threading.Thread(target=enqueue, args=(t,)) for t in range(threads)]
workers.append(threading.Thread(target=serve_requests))
for thread in workers:
    thread.start()
for thread in workers:
    thread.join(120)
assert asoq.wait_idle(timeout=120)
gc.collect()
from asoq import runtime
from asoq.result import TaskHandle
handles = sum(isinstance(o, TaskHandle) for o in gc.get_objects())
print(json.dumps({"before": before, "after": rss(), "handles": handles,
                  "pending": len(runtime._client.pending)}))
server.shutdown()
assert asoq.stop_worker(timeout=10)
"""


def test_ten_thousand_tasks_from_eight_threads_while_serving_run_exactly_once(
    script: Script, tmp_path: Path
) -> None:
    log = tmp_path / "records"
    arguments = (str(THREADS), str(PER_THREAD), str(REQUESTS))
    stdout, _ = script.run(LOAD, *arguments, timeout=240, env={"MATRIX_LOG": str(log)})
    ids = [r["value"]["id"] for r in read_records(log)]  # type: ignore[index]
    expected = [*range(-3, 0), *range(THREADS * PER_THREAD), *range(10**6, 10**6 + REQUESTS)]
    assert len(ids) == len(expected) and sorted(ids) == sorted(expected)  # type: ignore[type-var]
    memory = json.loads(stdout)
    # Nothing is kept per task (the outcome reader's local may still hold the last handle).
    assert memory["pending"] == 0 and memory["handles"] <= 1
    growth = memory["after"] - memory["before"]
    print(f"serving process RSS {memory['before'] / 2**20:.1f} MiB, +{growth / 2**20:.1f} MiB")
    # Back near its start: the 10,000 handles and frames are gone, not kept.
    assert growth < 8 * 2**20
