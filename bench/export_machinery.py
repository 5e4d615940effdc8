"""Three pieces of bespoke machinery against the plain standard-library way, measured in one run.

- ``dedupe``: the export's dedupe table keeps each identifier's 64-bit hash in one open-addressing
  ``array('Q')``; the plain way keeps the same hashes in a Python ``set``. Each adds ``--users``
  identifiers page by page and reports the memory it grew by (VmHWM from /proc) per user, and its time.
- ``requests``: the hook prepares each request by copying one prepared template and reuses the
  environment settings worked out once; the plain way is what ``Session.request`` does for every
  request (``prepare_request`` + ``merge_environment_settings``). Reports microseconds per request.
- ``window``: the page walk's own daemon fetcher threads against a ``ThreadPoolExecutor`` behind the
  same interface, both through ``hook.iter_pages(ahead=2)`` against the emulator (in this process).
  Reports how long a process takes to exit after its walk failed (page 2 refused) while page 3 is
  still waiting on a ``--hang`` second answer, and the pages per second of a plain walk over
  ``--pages`` pages at 5 ms latency.

Every contender runs in a fresh child process; contenders alternate round by round and medians
are printed with the ratios.

Usage: ``python bench/export_machinery.py [--users 2000000] [--requests 20000] [--pages 300] [--hang 5]
[--repeat 3] [--smoke]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import pairwise
from typing import Any

from _common import bench_parser, peak_rss_kib

PAGE = 1000
#: A clear win: the bespoke way at least twice as good as the plain way, or it goes.
GOAL = 2.0
WINDOW_CONN = "kumulos_bench_window"
WINDOW_PAGE = 100
WINDOW_LATENCY = 0.005


def child_dedupe(kind: str, users: int) -> dict[str, float]:
    """Add ``users`` identifiers page by page; report the VmHWM growth and the time."""
    import os

    from airflow_provider_kumulos._dedupe import SeenIdentifiers

    before = peak_rss_kib(os.getpid())
    began = time.perf_counter()
    if kind == "table":
        table = SeenIdentifiers()
        table.reserve(users)
        for start in range(0, users, PAGE):
            identifiers = [f"user-{index:012d}" for index in range(start, min(users, start + PAGE))]
            table.add_many(identifiers, range(len(identifiers)), None)
        held = len(table)
    else:
        seen: set[int] = set()
        for start in range(0, users, PAGE):
            identifiers = [f"user-{index:012d}" for index in range(start, min(users, start + PAGE))]
            hashes = list(map(hash, identifiers))
            [index for index, key in enumerate(hashes) if key not in seen and not seen.add(key)]  # type: ignore[func-returns-value]
        held = len(seen)
    seconds = time.perf_counter() - began
    assert held == users
    grown = peak_rss_kib(os.getpid()) - before
    return {"bytes_per_user": grown * 1024 / users, "seconds": seconds}


def child_requests(kind: str, count: int) -> dict[str, float]:
    """Prepare ``count`` page requests the hook's way (``copy``) or Session.request's (``session``)."""
    import requests

    session = requests.Session()
    session.auth = ("bench-api-key", "bench-server-key")
    session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
    base_url = "https://crm.kumulos.com"
    target = base_url + "/v2/users?currentPage=1&numberPerPage=1000"
    template = session.prepare_request(requests.Request("GET", base_url))
    environment = dict(session.merge_environment_settings(base_url, {}, True, True, None))
    began = time.perf_counter()
    for _ in range(count):
        if kind == "copy":
            prepared = template.copy()
            prepared.prepare_method("GET")
            prepared.url = target
            prepared.prepare_body(None, None)
            settings = environment
        else:
            prepared = session.prepare_request(requests.Request("GET", base_url))
            prepared.url = target
            settings = session.merge_environment_settings(target, {}, True, True, None)
    seconds = time.perf_counter() - began
    assert prepared.headers["Authorization"].startswith("Basic ") and "verify" in settings
    return {"us_per_request": seconds / count * 1e6, "seconds": seconds}


class PoolFetchers:
    """The plain way for the walk's fetchers: a ``ThreadPoolExecutor`` behind the same interface."""

    def __init__(self, fetch: Callable[[int], Any], workers: int) -> None:
        self._fetch = fetch
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kumulos-pages")

    def submit(self, page: int) -> Future[Any]:
        return self._pool.submit(self._fetch, page)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def child_window(kind: str, pages: int) -> dict[str, float]:
    """Walk with ``ahead=2`` on the walk's own fetchers (``fetchers``) or a pool (``pool``).

    ``pages == 0``: the walk is expected to fail; report when it did (the parent times the exit).
    """
    from airflow_provider_kumulos.exceptions import KumulosAuthError
    from airflow_provider_kumulos.hooks import _paging
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

    if kind == "pool":
        _paging._Fetchers = PoolFetchers  # type: ignore[assignment,misc]
    hook = KumulosCRMHook(WINDOW_CONN, timeout=60, max_retries=0)
    if pages == 0:
        try:
            list(hook.iter_pages(page_size=WINDOW_PAGE, ahead=2))
        except KumulosAuthError:
            return {"failed_at": time.time()}
        raise SystemExit("the walk did not fail")
    walk = hook.iter_pages(page_size=WINDOW_PAGE, ahead=2)
    next(walk)  # the first page pays for the connection lookup and the first socket
    began = time.perf_counter()
    walked = 1 + sum(1 for _ in walk)
    assert walked == pages
    return {"pages_per_second": (pages - 1) / (time.perf_counter() - began)}


def run(kind: str, size: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """One contender in a fresh interpreter; ``exited_at`` is when it had exited."""
    command = [sys.executable, __file__, "--child", kind, str(size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    exited_at = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "exited_at": exited_at}


def measure_window(pages: int, hang: float, repeat: int) -> dict[str, dict[str, list[float]]]:
    """Exit delay after a failed walk with one request hanging, and walk throughput, per contender."""
    from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

    env = {**os.environ, f"AIRFLOW_CONN_{WINDOW_CONN.upper()}": ""}
    results: dict[str, dict[str, list[float]]] = {
        k: {"exit": [], "rate": [], "overtaken": []} for k in ("fetchers", "pool")
    }
    with KumulosEmulator(users=pages * WINDOW_PAGE) as emulator:
        env[f"AIRFLOW_CONN_{WINDOW_CONN.upper()}"] = emulator.connection_uri()
        for _ in range(repeat):
            for kind, figures in results.items():
                emulator.clear_faults()
                emulator.script_faults([Fault("status", status=401)], page=2)
                emulator.script_faults([Fault("slow", delay=hang)], page=3)
                failed = run(kind, 0, env)
                figures["exit"].append(failed["exited_at"] - failed["failed_at"])
                emulator.clear_faults()
                emulator.set_latency(WINDOW_LATENCY)
                emulator.clear_requests()
                figures["rate"].append(run(kind, pages, env)["pages_per_second"])
                emulator.set_latency(0)
                arrived = sorted(emulator.requests, key=lambda request: request.timestamp)
                order = [int(request.query["currentPage"][0]) for request in arrived]
                figures["overtaken"].append(sum(later < earlier for earlier, later in pairwise(order)))
    return results


def main() -> None:
    """Interleave the contenders round by round; print medians and the memory ratio."""
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--hang", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, size = args.child
        child = {
            "table": child_dedupe,
            "set": child_dedupe,
            "copy": child_requests,
            "session": child_requests,
        }
        print(json.dumps(child.get(kind, child_window)(kind, int(size))))
        return
    if args.smoke:
        args.users, args.requests, args.pages, args.hang, args.repeat = 20_000, 500, 20, 1.0, 1
    sizes = {"table": args.users, "set": args.users, "copy": args.requests, "session": args.requests}
    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in sizes}
    for _ in range(args.repeat):
        for kind, runs in results.items():
            runs.append(run(kind, sizes[kind]))

    def median(kind: str, key: str) -> float:
        return statistics.median(result[key] for result in results[kind])

    print(f"dedupe, {args.users:,} identifiers in pages of {PAGE} (median of {args.repeat}):")
    for kind in ("table", "set"):
        print(
            f"  {kind:6} {median(kind, 'bytes_per_user'):6.1f} bytes/user, {median(kind, 'seconds'):6.2f} s"
        )
    ratio = median("set", "bytes_per_user") / max(1e-9, median("table", "bytes_per_user"))
    print(f"  set / table memory: {ratio:.1f}x (goal >= {GOAL:g}x: {'met' if ratio >= GOAL else 'MISSED'})")
    print(f"request preparation, {args.requests:,} requests (median of {args.repeat}):")
    for kind in ("copy", "session"):
        print(f"  {kind:7} {median(kind, 'us_per_request'):7.1f} us/request")
    ratio = median("session", "us_per_request") / max(1e-9, median("copy", "us_per_request"))
    verdict = "met" if ratio >= GOAL else "MISSED"
    print(f"  Session.request's steps / template copy: {ratio:.1f}x (goal >= {GOAL:g}x: {verdict})")
    window = measure_window(args.pages, args.hang, args.repeat)
    print(f"page window, ahead=2 (median of {args.repeat}):")
    for kind, figures in window.items():
        exit_delay, rate = statistics.median(figures["exit"]), statistics.median(figures["rate"])
        overtaken = sum(figures["overtaken"])
        print(
            f"  {kind:8} exit {exit_delay:5.2f} s after a failed walk with a {args.hang:g} s answer pending;"
            f" {rate:5.0f} pages/s over {args.pages} pages at {WINDOW_LATENCY * 1000:g} ms,"
            f" {overtaken} of {args.repeat * (args.pages - 1)} requests arrived ahead of an earlier page's"
        )
    saved = statistics.median(window["pool"]["exit"]) - statistics.median(window["fetchers"]["exit"])
    verdict = "met" if saved >= args.hang / 2 else "MISSED"
    print(
        f"  exit held up by the pool: {saved:.2f} s longer (goal: at least half the pending answer: {verdict})"
    )


if __name__ == "__main__":
    main()
