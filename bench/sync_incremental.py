"""Change-only sync: a second run that sends only what changed, and memory that a big state does not grow.

Speed: a 100,000-row JSONL model is synced with ``sync_state_path`` to an emulator process that adds
25 ms per answer, at max_concurrency=16; then 1% of the rows change and it is synced again, then
another 1% changes and it is synced with ``merge=True``. Goals: the second run makes at most 1.05
requests per changed row (2.1 with merge) and finishes at least 20x faster than the first.

Memory: each of 100,000 and 1,000,000 rows is synced (1% changed) against a state that already lists
every row, in a fresh child process that reports its own peak RSS (VmHWM). Goal: 1,000,000 rows
within 1.2x of 100,000. The states are seeded directly through the state module (a first run at that
size would only time the emulator).

    python bench/sync_incremental.py            # the sizes above
    python bench/sync_incremental.py --smoke    # 2,000 rows; 2,000 and 20,000 for memory
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import airflow_env, bench_parser, emulator_process, peak_rss_kib, print_table, run_child

REQUESTS_GOAL = 1.05
MERGE_REQUESTS_GOAL = 2.1
SPEEDUP_GOAL = 20.0
MEMORY_GOAL = 1.2
CHANGED = 0.01
API_KEY = "bench-api-key"


def attributes(i: int, version: int) -> dict[str, Any]:
    """Row ``i``'s segment attributes; rows picked for a change get ``version`` in them."""
    return {"segment": f"seg-{i % 5}", "ltv_band": i % 7, "version": version}


def write_model(path: Path, rows: int, changed: dict[int, int]) -> None:
    """``rows`` users as JSONL; ``changed`` maps a row number to its new version."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            record = {"identifier": f"user-{i:08d}", "attributes": attributes(i, changed.get(i, 0))}
            out.write(json.dumps(record) + "\n")


def changes(rows: int, offset: int, version: int) -> dict[int, int]:
    """1% of the rows, spread over the model, starting at ``offset``."""
    step = int(1 / CHANGED)
    return {i: version for i in range(offset, rows, step)}


def sync(source: Path, state: Path, merge: bool = False) -> tuple[float, dict[str, Any]]:
    """One SetAttributesOperator run with the sync state, in this process; seconds and summary."""
    from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

    operator: Any = SetAttributesOperator(
        task_id="sync",
        kumulos_conn_id="kumulos_bench",
        source_path=str(source),
        sync_state_path=str(state),
        merge=merge,
        max_concurrency=16,
    )
    began = time.perf_counter()
    summary = operator.execute({})
    return time.perf_counter() - began, summary


def speed(rows: int, latency: float, workdir: Path) -> None:
    """First run, a 1% change, a 1% change with merge: seconds and requests per changed row."""
    source, state = workdir / "model.jsonl", workdir / "state.sqlite"
    with emulator_process(0, workdir, api_key=API_KEY, extra_args=["--latency", str(latency)]) as emulator:
        os.environ["AIRFLOW_CONN_KUMULOS_BENCH"] = emulator.connection_json()
        write_model(source, rows, {})
        runs = [("first run", 0, sync(source, state))]
        second = changes(rows, 0, 1)
        write_model(source, rows, second)
        runs.append(("1% changed", len(second), sync(source, state)))
        third = {**second, **changes(rows, 1, 1)}
        write_model(source, rows, third)
        runs.append(("1% more, merge=True", len(third) - len(second), sync(source, state, merge=True)))
    table = []
    for name, changed, (seconds, summary) in runs:
        per_row = f"{summary['requests'] / changed:.3f}" if changed else "-"
        table.append(
            [name, f"{seconds:.2f}", summary["succeeded"], summary["unchanged"], summary["requests"], per_row]
        )
    print(f"\n{rows:,} rows, {latency * 1000:.0f} ms per answer, max_concurrency=16")
    print_table(["run", "seconds", "sent", "unchanged", "requests", "requests/changed row"], table)
    first, plain, merged = (run[2] for run in runs)
    plain_ratio = plain[1]["requests"] / runs[1][1]
    merge_ratio = merged[1]["requests"] / runs[2][1]
    speedup = first[0] / plain[0]
    print(
        f"requests per changed row {plain_ratio:.3f} (goal <= {REQUESTS_GOAL}: {_verdict(plain_ratio <= REQUESTS_GOAL)})"
    )
    print(
        f"with merge {merge_ratio:.3f} (goal <= {MERGE_REQUESTS_GOAL}: "
        f"{_verdict(merge_ratio <= MERGE_REQUESTS_GOAL)})"
    )
    print(
        f"second run {speedup:.1f}x faster than the first (goal >= {SPEEDUP_GOAL:.0f}x: {_verdict(speedup >= SPEEDUP_GOAL)})"
    )


def seed_state(state: Path, rows: int) -> None:
    """A state listing every row as synced with version 0, written through the state module."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Job
    from airflow_provider_kumulos._bulk.sync import BATCH, open_state

    with open_state(ObjectStoragePath(f"file://{state}"), API_KEY, full_refresh=False, save=True) as synced:
        for start in range(0, rows, BATCH):
            jobs = [
                Job("seed", f"user-{i:08d}", attributes(i, 0)) for i in range(start, min(rows, start + BATCH))
            ]
            synced.classify(jobs)
            for job in jobs:
                synced.settled(job, True)


def child(source: str, state: str) -> None:
    """Sync ``source`` against ``state``; print the summary, seconds and this process's peak RSS as JSON."""
    seconds, summary = sync(Path(source), Path(state))
    print(json.dumps({"summary": summary, "seconds": seconds, "vmhwm_kib": peak_rss_kib(os.getpid())}))


def memory(sizes: tuple[int, int], workdir: Path) -> None:
    """Peak RSS of a fresh child syncing each size against a full state."""
    env = {**os.environ}
    figures: dict[int, dict[str, Any]] = {}
    with emulator_process(0, workdir, api_key=API_KEY, env=env) as emulator:
        env["AIRFLOW_CONN_KUMULOS_BENCH"] = emulator.connection_json()
        for rows in sizes:
            source, state = workdir / f"model-{rows}.jsonl", workdir / f"state-{rows}.sqlite"
            seed_state(state, rows)
            write_model(source, rows, changes(rows, 0, 1))
            result = run_child([sys.executable, __file__, "--child", str(source), str(state)], env=env)
            if result.returncode != 0:
                raise RuntimeError(f"child failed:\n{result.stderr[-3000:]}")
            figures[rows] = json.loads(result.stdout.strip().splitlines()[-1])
            figures[rows]["state_mib"] = state.stat().st_size / 2**20
            source.unlink()
            state.unlink()
    table = []
    for rows, figure in figures.items():
        summary = figure["summary"]
        table.append(
            [
                f"{rows:,}",
                f"{figure['vmhwm_kib'] / 1024:.1f}",
                f"{figure['state_mib']:.1f}",
                f"{figure['seconds']:.1f}",
                summary["succeeded"],
                summary["unchanged"],
            ]
        )
    small, large = sizes
    ratio = figures[large]["vmhwm_kib"] / figures[small]["vmhwm_kib"]
    print("\nSync against a state listing every row, 1% changed (fresh child per size)")
    print_table(["rows", "peak RSS MiB", "state MiB", "seconds", "sent", "unchanged"], table)
    print(
        f"peak RSS {large:,} / {small:,} rows: {ratio:.3f}x (goal <= {MEMORY_GOAL}x: {_verdict(ratio <= MEMORY_GOAL)})"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.025, help="seconds the emulator adds per answer")
    parser.add_argument("--skip-memory", action="store_true", help="only the speed part")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = 2_000 if args.smoke else args.rows
    sizes = (2_000, 20_000) if args.smoke else (100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="kumulos-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.update(airflow_env(workdir / "airflow"))
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        speed(rows, args.latency, workdir)
        if not args.skip_memory:
            memory(sizes, workdir)


if __name__ == "__main__":
    main()
