"""Two pieces of bespoke machinery against the plain standard-library way, measured in one run.

- ``dedupe``: the export's dedupe table keeps each identifier's 64-bit hash in one open-addressing
  ``array('Q')``; the plain way keeps the same hashes in a Python ``set``. Each adds ``--users``
  identifiers page by page and reports the memory it grew by (VmHWM from /proc) per user, and its time.
- ``requests``: the hook prepares each request by copying one prepared template and reuses the
  environment settings worked out once; the plain way is what ``Session.request`` does for every
  request (``prepare_request`` + ``merge_environment_settings``). Reports microseconds per request.

Every contender runs in a fresh child process; contenders alternate round by round and medians
are printed with the ratios.

Usage: ``python bench/export_machinery.py [--users 2000000] [--requests 20000] [--repeat 3] [--smoke]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _common import bench_parser, peak_rss_kib

PAGE = 1000
#: A clear win: the bespoke way at least twice as good as the plain way, or it goes.
GOAL = 2.0


def child_dedupe(kind: str, users: int) -> dict[str, float]:
    """Add ``users`` identifiers page by page; report the VmHWM growth and the time."""
    import os

    from airflow_provider_kumulos._export.run import SeenIdentifiers

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


def run(kind: str, users: int) -> dict[str, float]:
    """One contender in a fresh interpreter."""
    command = [sys.executable, __file__, "--child", kind, str(users)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Interleave the contenders round by round; print medians and the memory ratio."""
    parser = bench_parser(__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, size = args.child
        child = child_dedupe if kind in ("table", "set") else child_requests
        print(json.dumps(child(kind, int(size))))
        return
    if args.smoke:
        args.users, args.requests, args.repeat = 20_000, 500, 1
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


if __name__ == "__main__":
    main()
