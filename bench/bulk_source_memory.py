"""Peak memory of a bulk write streaming its source: 1,000,000 lines against 100,000 (goal: flat, within ~10%).

Each size runs SetAttributesOperator in a fresh child process with ``dry_run=True`` (every line is read,
parsed, validated and counted for duplicates, nothing is sent), and the child reports its own peak
resident memory (VmHWM from /proc/<pid>/status). ``--wet`` instead sends every record to an emulator
process with no added latency (sizes 10x smaller, since every record is a request).

    python bench/bulk_source_memory.py            # JSONL, 100,000 and 1,000,000 lines
    python bench/bulk_source_memory.py --format csv
    python bench/bulk_source_memory.py --format sql  # rows of a SQLite table, through sql + sql_conn_id
    python bench/bulk_source_memory.py --wet      # 10,000 and 100,000 real writes
    python bench/bulk_source_memory.py --smoke    # 2,000 and 20,000 lines
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import airflow_env, bench_parser, emulator_process, peak_rss_kib, print_table, run_child

FLAT_GOAL = 1.10


def write_source(path: Path, lines: int, fmt: str) -> None:
    """``lines`` distinct users with a few attributes each, as JSONL, CSV or a SQLite table."""
    if fmt == "sql":
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("CREATE TABLE users (identifier TEXT, plan TEXT, visits INTEGER, score REAL)")
            db.executemany(
                "INSERT INTO users VALUES (?, ?, ?, ?)",
                ((f"user-{i:08d}", f"plan-{i % 7}", i % 1000, round(i / 7, 3)) for i in range(lines)),
            )
            db.commit()
        return
    with path.open("w", encoding="utf-8", newline="") as out:
        if fmt == "csv":
            out.write("identifier,plan,visits,score\n")
            for i in range(lines):
                out.write(f"user-{i:08d},plan-{i % 7},{i % 1000},{i / 7:.3f}\n")
        else:
            for i in range(lines):
                record = {
                    "identifier": f"user-{i:08d}",
                    "attributes": {"plan": f"plan-{i % 7}", "visits": i % 1000},
                }
                out.write(json.dumps(record) + "\n")


def child(source: str, wet: bool) -> None:
    """Run the operator on ``source`` and print what it did plus this process's peak RSS, as JSON."""
    from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

    if source.endswith(".sql"):
        os.environ["AIRFLOW_CONN_BENCH_WAREHOUSE"] = json.dumps({"conn_type": "sqlite", "host": source})
        where: dict[str, Any] = {"sql": "SELECT * FROM users", "sql_conn_id": "bench_warehouse"}
    else:
        types = {"visits": "int", "score": "float"} if source.endswith(".csv") else None
        where = {"source_path": source, "attribute_types": types}
    operator: Any = SetAttributesOperator(
        task_id="memory", kumulos_conn_id="kumulos_bench", dry_run=not wet, max_concurrency=16, **where
    )
    began = time.perf_counter()
    summary = operator.execute({})
    seconds = time.perf_counter() - began
    print(json.dumps({"summary": summary, "seconds": seconds, "vmhwm_kib": peak_rss_kib(os.getpid())}))


def measure(source: Path, wet: bool, env: dict[str, str]) -> dict[str, Any]:
    result = run_child(
        [sys.executable, __file__, "--child", str(source), *(["--wet"] if wet else [])], env=env
    )
    if result.returncode != 0:
        raise RuntimeError(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--format", choices=("jsonl", "csv", "sql"), default="jsonl")
    parser.add_argument("--wet", action="store_true", help="send every record to an emulator (no latency)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.wet)
        return
    small, large = (100_000, 1_000_000) if not args.smoke else (2_000, 20_000)
    if args.wet:
        small, large = small // 10, large // 10
    with tempfile.TemporaryDirectory(prefix="kumulos-bench-") as tmp:
        workdir = Path(tmp)
        env = airflow_env(workdir / "airflow")
        env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        rows = []
        with emulator_process(0, workdir) if args.wet else contextlib.nullcontext() as emulator:
            if emulator is not None:
                env["AIRFLOW_CONN_KUMULOS_BENCH"] = emulator.connection_json()
            figures = {}
            for lines in (small, large):
                source = workdir / f"users-{lines}.{args.format}"
                write_source(source, lines, args.format)
                figures[lines] = measure(source, args.wet, env)
                source.unlink()
        for lines in (small, large):
            figure = figures[lines]
            summary = figure["summary"]
            rows.append(
                [
                    f"{lines:,}",
                    f"{figure['vmhwm_kib'] / 1024:.1f}",
                    f"{figure['seconds']:.1f}",
                    f"{summary['total']:,}",
                    f"{summary['succeeded'] + summary['skipped']:,}",
                    summary["requests"],
                ]
            )
    ratio = figures[large]["vmhwm_kib"] / figures[small]["vmhwm_kib"]
    mode = "wet: every record sent to the emulator" if args.wet else "dry_run=True: read, parsed, validated"
    source_kind = "sql (SQLite)" if args.format == "sql" else f"{args.format.upper()} source_path"
    print(f"\n{source_kind}, {mode}")
    print_table(["lines", "peak RSS MiB", "seconds", "records", "valid", "requests"], rows)
    verdict = "met" if ratio <= FLAT_GOAL else "NOT met"
    print(f"peak RSS {large:,} / {small:,} lines: {ratio:.3f}x (goal <= {FLAT_GOAL}x: {verdict})")


if __name__ == "__main__":
    main()
