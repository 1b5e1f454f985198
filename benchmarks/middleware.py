"""Benchmark ``AsoqMiddleware``: its cost per request, and how long the first request waits.

The application (``bench_apps.app``) calls ``noop.after_response(1)`` once per request: without
the middleware that enqueues at once, with it the task is held and handed over from the
response's ``close()``. Every task of every round is checked to have run and succeeded (after
``wait_idle()``, in the process that enqueued it), and ``max_pending`` is never reached.

1. Requests/s with and without the middleware, two ways, in rounds where the two variants
   take turns block by block; the median of the rounds, and the overhead in percent (the extra
   time per request), from the medians and paired round by round:
   a. over HTTP: each variant is served by werkzeug's threaded dev server in its own child
      process, both side by side; this process is the load generator, with a few threads each
      reusing one ``http.client.HTTPConnection``. Werkzeug answers every request with
      ``Connection: close`` (it disables keep-alive), so each request is in fact a new TCP
      connection, which ``HTTPConnection`` opens by itself, and a new server thread;
   b. in process: the WSGI application called directly with a minimal environ, iterated and
      closed, which shows the middleware's own cost with no server around it.
2. The first request in a fresh process, which starts the worker, against the median of the
   next ones, over several fresh processes (and, as a control, the same with the worker
   started beforehand); and ``asoq.start_worker()`` itself in a fresh process.

The machine may be shared and noisy, so compare the ratios more than the absolute times.
Run from the repository root: ``.venv/bin/python benchmarks/middleware.py``.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import statistics
import subprocess
import sys
import threading
import time
import wsgiref.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # asoq from this checkout, and bench_apps

import bench_apps  # noqa: E402
from bench_tasks import noop  # noqa: E402
from werkzeug.serving import WSGIRequestHandler, make_server  # noqa: E402

import asoq  # noqa: E402
from asoq.wsgi import AsoqMiddleware  # noqa: E402

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

# A round is BLOCKS blocks of N requests of each variant, the two alternated block by block
# (in ABBA order), so that both see the same noise; its tasks are checked after it.
HTTP_ROUNDS, HTTP_BLOCKS, HTTP_N, HTTP_WARMUP_N, HTTP_THREADS = 15, 6, 240, 1_000, 4
CALL_ROUNDS, CALL_BLOCKS, CALL_N, CALL_WARMUP_N = 15, 20, 1_000, 5_000
FRESH_PROCESSES, FOLLOWING_N = 9, 100
MAX_PENDING = 100_000  # never reached: every round starts from an idle worker
IDLE_TIMEOUT = 120.0  # for wait_idle() after a round
REPLY_TIMEOUT = IDLE_TIMEOUT + 30.0  # for a server child's answer to a command
CHILD_TIMEOUT = 120.0  # for a fresh process of part 2 to finish, and a server child to stop
HTTP_TIMEOUT = 30.0  # for one HTTP request
VARIANTS = ("without", "with")


def no_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def testing_environ() -> WSGIEnvironment:
    environ: WSGIEnvironment = {}
    wsgiref.util.setup_testing_defaults(environ)
    return environ


def serve_one(application: WSGIApplication, environ: WSGIEnvironment) -> None:
    """What a server does with one request: call, iterate the response, close it."""
    result = application(environ, no_start_response)
    for _chunk in result:
        pass
    close = getattr(result, "close", None)
    if close is not None:
        close()


def variant_app(variant: str) -> WSGIApplication:
    """The application without or with the middleware; either way the worker gets
    ``MAX_PENDING`` (without it, the worker is started here so no request pays for that)."""
    if variant == "with":
        return AsoqMiddleware(bench_apps.app, max_pending=MAX_PENDING)
    asoq.start_worker(max_pending=MAX_PENDING)
    return bench_apps.app


def interleaved(
    run_block: Callable[[str], float], check: Callable[[], None], rounds: int, blocks: int, n: int
) -> dict[str, list[float]]:
    """Requests/s of each variant in each round; ``run_block(variant)`` times ``n`` requests
    and ``check()`` is called after each round, out of the timing."""
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        elapsed = dict.fromkeys(VARIANTS, 0.0)
        for block in range(blocks):
            for variant in VARIANTS if block % 2 == 0 else VARIANTS[::-1]:
                elapsed[variant] += run_block(variant)
        check()
        for variant in VARIANTS:
            rates[variant].append(blocks * n / elapsed[variant])
    return rates


def overhead(without: float, with_: float) -> str:
    """The extra time per request with the middleware, from two rates, in percent."""
    return f"{(without / with_ - 1) * 100:+.1f}%"


def print_rates(rates: dict[str, list[float]], unit: str) -> None:
    for variant, runs in rates.items():
        shown = ", ".join(f"{rate:,.0f}" for rate in runs)
        label = f"{variant} middleware"
        print(f"   {label:19} {statistics.median(runs):9,.0f} {unit}  (rounds: {shown})")
    without, with_ = (statistics.median(rates[variant]) for variant in VARIANTS)
    print(f"   ratio with/without: {with_ / without:.3f}x   overhead: {overhead(without, with_)}")
    # The two variants of a round ran side by side, so their ratio sees less noise.
    pairs = list(zip(*(rates[variant] for variant in VARIANTS), strict=True))
    paired = statistics.median(without / with_ - 1 for without, with_ in pairs) * 100
    shown = ", ".join(overhead(without, with_) for without, with_ in pairs)
    print(f"   overhead paired round by round: {paired:+.1f}% median  (rounds: {shown})")
    print("   target: at most 5% overhead")


# 1a. Over HTTP: a server child per variant, this process the load generator.


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # no access log: stderr would cost more than what is measured


def serve(variant: str) -> None:
    """The server child: print its port, then answer ``check N`` lines until stdin closes."""
    try:
        application = variant_app(variant)
        httpd = make_server(
            "127.0.0.1", 0, application, threaded=True, request_handler=QuietHandler
        )
        thread = threading.Thread(target=httpd.serve_forever, name="serve", daemon=True)
        thread.start()
        try:
            print(f"port {httpd.server_port}", flush=True)
            for line in sys.stdin:
                answer_check(line)
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(CHILD_TIMEOUT)
    finally:
        asoq.stop_worker()


def answer_check(line: str) -> None:
    command, _, argument = line.partition(" ")
    if command != "check":
        raise ValueError(f"unknown command {line!r}")
    try:
        bench_apps.check_tasks(int(argument), IDLE_TIMEOUT)
    except RuntimeError as error:
        print(f"error {error}", flush=True)
    else:
        print("ok", flush=True)


class ServerChild:
    """A child process serving one variant, and this process's connections to it."""

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", variant],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.connections: list[http.client.HTTPConnection] = []
        self._buffer = b""

    def ready(self) -> None:
        port = int(self._reply().removeprefix("port "))
        for _ in range(HTTP_THREADS):
            self.connections.append(
                http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
            )

    def check(self, expected: int) -> None:
        """Raise unless the ``expected`` tasks since the last check all ran and succeeded."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"check {expected}\n".encode())
        self.process.stdin.flush()
        reply = self._reply()
        if reply != "ok":
            raise RuntimeError(f"server {self.variant} middleware: {reply}")

    def _reply(self) -> str:
        """The child's next line, waited for up to ``REPLY_TIMEOUT`` s."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + REPLY_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise RuntimeError(f"server {self.variant} middleware did not answer")
                data = os.read(fd, 4096)
                if not data:
                    raise RuntimeError(f"server {self.variant} middleware exited")
                self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        if self.process.stdin is not None:
            self.process.stdin.close()  # the child's cue to stop its server and its worker
        try:
            self.process.wait(CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def load(server: ServerChild, n: int) -> float:
    """Seconds for ``n`` GETs, split over the server's connections, one thread each."""
    per_thread = n // len(server.connections)
    start = threading.Barrier(len(server.connections) + 1, timeout=HTTP_TIMEOUT)
    errors: list[BaseException] = []

    def client(connection: http.client.HTTPConnection) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                connection.request("GET", "/")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or body != bench_apps.BODY:
                    raise RuntimeError(f"got {response.status} {body[:200]!r}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(c,)) for c in server.connections]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"server {server.variant} middleware: {errors[0]!r}") from errors[0]
    return elapsed


def bench_http() -> None:
    servers: dict[str, ServerChild] = {}

    def check() -> None:
        for server in servers.values():
            server.check(HTTP_BLOCKS * HTTP_N)

    try:
        for variant in VARIANTS:
            servers[variant] = ServerChild(variant)
        for server in servers.values():
            server.ready()
            load(server, HTTP_WARMUP_N)
            server.check(HTTP_WARMUP_N)
        rates = interleaved(
            lambda variant: load(servers[variant], HTTP_N), check, HTTP_ROUNDS, HTTP_BLOCKS, HTTP_N
        )
    finally:
        for server in servers.values():
            server.close()
    print("1a. requests/s over HTTP: werkzeug's threaded server in a child process per variant")
    print(
        f"   {HTTP_ROUNDS} rounds of {HTTP_BLOCKS} alternated blocks of {HTTP_N:,} requests"
        f" from {HTTP_THREADS} threads (a new connection each: werkzeug closes them),"
        f" after {HTTP_WARMUP_N:,} warm-up requests; median of the rounds"
    )
    print_rates(rates, "req/s")


# 1b. In process: the WSGI application called directly.


def call(application: WSGIApplication, environ: WSGIEnvironment, n: int) -> float:
    """Seconds for ``n`` direct calls of ``application``."""
    started = time.perf_counter()
    for _ in range(n):
        serve_one(application, environ)
    return time.perf_counter() - started


def bench_in_process() -> None:
    environ = testing_environ()
    try:
        applications = {variant: variant_app(variant) for variant in VARIANTS}  # one worker
        for application in applications.values():
            call(application, environ, CALL_WARMUP_N)
        bench_apps.check_tasks(len(VARIANTS) * CALL_WARMUP_N, IDLE_TIMEOUT)
        rates = interleaved(
            lambda variant: call(applications[variant], environ, CALL_N),
            lambda: bench_apps.check_tasks(len(VARIANTS) * CALL_BLOCKS * CALL_N, IDLE_TIMEOUT),
            CALL_ROUNDS,
            CALL_BLOCKS,
            CALL_N,
        )
    finally:
        asoq.stop_worker()
    print("1b. requests/s in process: the WSGI application called, iterated and closed")
    print(
        f"   {CALL_ROUNDS} rounds of {CALL_BLOCKS} alternated blocks of {CALL_N:,} calls,"
        f" after {CALL_WARMUP_N:,} warm-up calls; median of the rounds"
    )
    print_rates(rates, "req/s")


# 2. The first request in a fresh process, and start_worker() itself.


def first_requests(prestart: bool) -> None:
    """A fresh child: time its first request through the middleware and the next ones."""
    environ = testing_environ()
    application = AsoqMiddleware(bench_apps.app, max_pending=MAX_PENDING)
    if prestart:
        asoq.start_worker(max_pending=MAX_PENDING)
    times = []
    try:
        for _ in range(1 + FOLLOWING_N):
            started = time.perf_counter()
            serve_one(application, environ)
            times.append(time.perf_counter() - started)
        bench_apps.check_tasks(1 + FOLLOWING_N, IDLE_TIMEOUT)
    finally:
        asoq.stop_worker()
    print(json.dumps({"first": times[0], "following": statistics.median(times[1:])}))


def start_worker() -> None:
    """A fresh child: time ``start_worker()``, and until its first task has run."""
    try:
        started = time.perf_counter()
        asoq.start_worker(max_pending=MAX_PENDING)
        returned = time.perf_counter()
        noop.delay(1).result(timeout=IDLE_TIMEOUT)
        ran = time.perf_counter()
    finally:
        asoq.stop_worker()
    print(json.dumps({"start_worker": returned - started, "first_task": ran - started}))


def fresh(command: str) -> dict[str, float]:
    """Run this script's ``command`` in a fresh process; the numbers it printed."""
    done = subprocess.run(
        [sys.executable, __file__, command],
        stdout=subprocess.PIPE,
        timeout=CHILD_TIMEOUT,
        check=True,
    )
    numbers: dict[str, float] = json.loads(done.stdout)
    return numbers


def bench_first_request() -> None:
    runs: dict[str, list[dict[str, float]]] = {"first": [], "prestarted": [], "start": []}
    for _ in range(FRESH_PROCESSES):  # interleaved, so all three see the same noise
        runs["first"].append(fresh("first-request"))
        runs["prestarted"].append(fresh("first-request-prestarted"))
        runs["start"].append(fresh("start-worker"))
    print("2. the first request in a fresh process (it starts the worker) vs the next ones")
    print(
        f"   {FRESH_PROCESSES} fresh processes each, in process calls as in 1b, first request"
        f" vs the median of the next {FOLLOWING_N}; medians over the processes"
    )
    labels = {"first": "worker started by it", "prestarted": "control: worker started before"}
    for key, label in labels.items():
        firsts = [run["first"] * 1e3 for run in runs[key]]
        extras = [(run["first"] - run["following"]) * 1e3 for run in runs[key]]
        ratios = [run["first"] / run["following"] for run in runs[key]]
        following = statistics.median(run["following"] * 1e6 for run in runs[key])
        shown = ", ".join(f"{extra:.2f}" for extra in extras)
        print(
            f"   {label}: first {statistics.median(firsts):.2f} ms, next {following:.1f} us;"
            f" extra {statistics.median(extras):.2f} ms, ratio {statistics.median(ratios):,.0f}x"
        )
        print(f"      extra per process, ms: {shown}")
    start = [run["start_worker"] * 1e3 for run in runs["start"]]
    first_task = [run["first_task"] * 1e3 for run in runs["start"]]
    print(
        f"   asoq.start_worker() in a fresh process: {statistics.median(start):.2f} ms"
        f" (runs: {', '.join(f'{t:.2f}' for t in start)})"
    )
    print(
        f"   then its first task done after: {statistics.median(first_task):.0f} ms from the"
        f" start (runs: {', '.join(f'{t:.0f}' for t in first_task)})"
    )


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, asoq from {asoq.__file__}")
    bench_http()
    bench_in_process()
    bench_first_request()


CHILDREN: dict[str, Callable[..., None]] = {
    "serve": serve,
    "first-request": lambda: first_requests(prestart=False),
    "first-request-prestarted": lambda: first_requests(prestart=True),
    "start-worker": start_worker,
}

if __name__ == "__main__":
    if len(sys.argv) > 1:
        CHILDREN[sys.argv[1]](*sys.argv[2:])
    else:
        main()
