"""Export throughput: ExportUsersOperator vs a bare paging loop vs HttpOperator, measured in one run.

The emulator serves the users from its own process, so its CPU and memory are not counted. Each
contender runs in a fresh subprocess that first pays the same one-time costs (imports, Airflow's
provider discovery, connection lookup), then times only its export, and reports its peak RSS
(VmHWM from /proc/<pid>/status). Contenders, over the same pages of ``--page-size``:

- ``raw``: ``requests.Session`` fetching every page and discarding the bytes (the ceiling);
- ``export``: ``ExportUsersOperator`` writing JSON Lines to a local file;
- ``http``: ``HttpOperator`` (apache-airflow-providers-http) with a ``pagination_function``,
  its ``response_filter`` writing the same JSON Lines file.

Usage: ``python bench/export_throughput.py [--users 200000] [--repeat 3] [--latency 0] [--smoke]``.
Prints users/s for each, every run's time, and the ratios of the best and of the median runs
(goal: export >= 0.8 x raw). With ``--latency 0`` the emulator answers the pages that fit its
128 MB page cache from memory (about 120 of 200 pages of 1 MB) and renders the rest on each
request, so the raw loop is bound partly by the client's CPU and partly by the emulator's: every
cycle the export spends per user shows. ``--latency`` adds a per-answer delay like a remote API's,
where the export's requests in flight (``max_concurrency``, default 2) put it ahead of the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

API_KEY, SERVER_KEY = "bench-api-key", "bench-server-key"


@contextmanager
def emulator(users: int, latency: float = 0.0) -> Iterator[str]:
    """Run the Kumulos emulator CLI in its own process (``latency`` seconds per answer); yields its base URL."""
    with tempfile.TemporaryDirectory() as workdir:
        ready = Path(workdir) / "ready"
        command = [sys.executable, "-m", "airflow_provider_kumulos.testing.emulator", "--port", "0"]
        command += ["--users", str(users), "--api-key", API_KEY, "--server-key", SERVER_KEY]
        command += ["--latency", str(latency)]
        process = subprocess.Popen([*command, "--ready-file", str(ready)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not start")
                time.sleep(0.05)
            yield ready.read_text().strip()
        finally:
            process.terminate()
            process.wait(timeout=30)


def measure(
    mode: str, base_url: str, page_size: int, output: Path, fmt: str = "jsonl", concurrency: int = 2
) -> dict[str, Any]:
    """Run one contender in a fresh interpreter; returns its seconds, users and peak RSS."""
    command = [sys.executable, __file__, "--child", mode, "--base-url", base_url, "--format", fmt]
    command += ["--page-size", str(page_size), "--output", str(output), "--max-concurrency", str(concurrency)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def best_of(
    repeat: int, base_url: str, page_size: int, output: Path, concurrency: int
) -> dict[str, dict[str, Any]]:
    """Each contender's fastest of ``repeat`` runs (the least disturbed by other load), with its highest
    peak RSS. Runs are interleaved (raw, export, http, raw, ...) so that load changes hit all alike."""
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in CONTENDERS}
    for _ in range(repeat):
        for mode in CONTENDERS:
            runs[mode].append(measure(mode, base_url, page_size, output, concurrency=concurrency))
    return {
        mode: {
            **min(results, key=lambda run: run["seconds"]),
            "peak_rss_mb": max(run["peak_rss_mb"] for run in results),
            "all_seconds": sorted(run["seconds"] for run in results),
        }
        for mode, results in runs.items()
    }


# --- the contenders (run inside the child process) ----------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM)."""
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found")


def run_raw(base_url: str, page_size: int, output: Path, fmt: str, concurrency: int) -> int:
    """Fetch every page with requests and throw the bytes away; returns the users the app holds."""
    import requests

    session = requests.Session()
    session.auth = (API_KEY, SERVER_KEY)
    session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
    page, total = 1, None
    while True:
        response = session.get(
            f"{base_url}/v2/users", params={"currentPage": page, "numberPerPage": page_size}, timeout=60
        )
        response.raise_for_status()
        if total is None:
            total = int(response.json()["totalUsers"])
        if page * page_size >= total:
            return total
        page += 1


def run_export(base_url: str, page_size: int, output: Path, fmt: str, concurrency: int) -> int:
    """ExportUsersOperator to a local file in ``fmt``, ``concurrency`` requests in flight."""
    from airflow_provider_kumulos.operators.export import ExportUsersOperator

    operator = ExportUsersOperator(
        task_id="export",
        output_path=str(output),
        format=fmt,
        page_size=page_size,
        max_concurrency=concurrency,
        progress_interval=3600,
    )
    summary = operator.execute({})  # type: ignore[arg-type]
    return int(summary["users_written"])


def run_http(base_url: str, page_size: int, output: Path, fmt: str, concurrency: int) -> int:
    """HttpOperator paging with a pagination_function; its response_filter writes JSON Lines."""
    from airflow.providers.http.operators.http import HttpOperator

    def next_page(response: Any) -> dict[str, Any] | None:
        """Parameters of the page after ``response``, or None after the last one."""
        body = response.json()
        page = int(response.request.url.split("currentPage=")[1].split("&")[0])
        if page * page_size >= body["totalUsers"] or not body["users"]:
            return None
        return {"data": {"currentPage": page + 1, "numberPerPage": page_size}}

    def write_users(responses: list[Any]) -> int:
        """Write every user of every page as a JSON line; returns how many."""
        written = 0
        with output.open("w") as stream:
            for response in responses:
                for user in response.json()["users"]:
                    stream.write(json.dumps(user, separators=(",", ":")) + "\n")
                    written += 1
        return written

    http_export = HttpOperator(
        task_id="http_export",
        http_conn_id="kumulos_http",
        method="GET",
        endpoint="/v2/users",
        data={"currentPage": 1, "numberPerPage": page_size},
        headers={"Accept": "application/json"},
        pagination_function=next_page,
        response_filter=write_users,
        log_response=False,
    )
    return int(http_export.execute({}))  # type: ignore[arg-type]


CONTENDERS = {"raw": run_raw, "export": run_export, "http": run_http}


def warm_up(output: Path) -> None:
    """Pay one-time process costs before the clock starts, the same for every contender: imports,
    Airflow's provider discovery (first ObjectStoragePath) and connection lookup."""
    import msgspec  # noqa: F401
    import requests  # noqa: F401
    import tenacity  # noqa: F401
    from airflow.sdk import BaseHook, ObjectStoragePath

    ObjectStoragePath(f"file://{output}").fs.exists(str(output.parent))
    BaseHook.get_connection("kumulos_default")
    BaseHook.get_connection("kumulos_http")


def child(mode: str, base_url: str, page_size: int, output: Path, fmt: str, concurrency: int) -> None:
    """Entry point of a measuring subprocess: prints one JSON line."""
    host, port = base_url.rsplit(":", 1)
    os.environ["AIRFLOW_CONN_KUMULOS_DEFAULT"] = json.dumps(
        {"conn_type": "kumulos", "host": base_url, "login": API_KEY, "password": SERVER_KEY}
    )
    os.environ["AIRFLOW_CONN_KUMULOS_HTTP"] = json.dumps(
        {
            "conn_type": "http",
            "host": host.split("://")[1],
            "port": int(port),
            "schema": "http",
            "login": API_KEY,
            "password": SERVER_KEY,
        }
    )
    warm_up(output)
    output.unlink(missing_ok=True)  # replacing an earlier run's file is not part of this run's work
    started = time.perf_counter()
    users = CONTENDERS[mode](base_url, page_size, output, fmt, concurrency)
    seconds = time.perf_counter() - started
    print(json.dumps({"mode": mode, "users": users, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


# --- the report ---------------------------------------------------------------------------


def main() -> None:
    """Run the contenders against one emulator and print users/s, time and memory ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the fastest counts")
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        help="seconds the emulator waits before each answer (a remote API)",
    )
    parser.add_argument(
        "--max-concurrency", type=int, default=2, help="the export's requests in flight (its default: 2)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script still works")
    parser.add_argument("--child", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--format", default="jsonl", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.base_url, args.page_size, args.output, args.format, args.max_concurrency)
        return
    if args.smoke:
        args.users, args.page_size, args.repeat = 2_000, 100, 1
    print(
        f"export throughput: {args.users:,} users, pages of {args.page_size}, best of {args.repeat}, "
        f"server latency {args.latency * 1000:.0f} ms, export max_concurrency={args.max_concurrency}"
    )
    with emulator(args.users, args.latency) as base_url, tempfile.TemporaryDirectory() as workdir:
        output = Path(workdir) / "users.jsonl"
        measure("raw", base_url, args.page_size, output)  # warm-up: the emulator renders and caches pages
        results = best_of(args.repeat, base_url, args.page_size, output, args.max_concurrency)
    for mode, result in results.items():
        if result["users"] != args.users:
            raise SystemExit(f"{mode} exported {result['users']} users, expected {args.users}")
        rate = result["users"] / result["seconds"]
        print(
            f"  {mode:7s} {rate:12,.0f} users/s  {result['seconds']:8.2f} s  peak RSS {result['peak_rss_mb']:8.1f} MB"
            f"  (all runs: {', '.join(f'{seconds:.2f}' for seconds in result['all_seconds'])} s)"
        )
    raw, export, http = results["raw"], results["export"], results["http"]
    print(f"export / raw throughput ratio: {raw['seconds'] / export['seconds']:.2f} (goal >= 0.80)")
    middle = statistics.median(raw["all_seconds"]) / statistics.median(export["all_seconds"])
    print(f"export / raw throughput ratio of the median runs: {middle:.2f}")
    print(f"export / HttpOperator time ratio: {export['seconds'] / http['seconds']:.2f}")
    print(f"export / HttpOperator peak RSS ratio: {export['peak_rss_mb'] / http['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
