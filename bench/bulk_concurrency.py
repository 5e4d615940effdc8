"""Bulk attribute writes: max_concurrency=16 against one at a time, on an emulator that adds 25 ms per request.

Both runs set the attributes of the same number of new users through SetAttributesOperator, in this
process, against one emulator running as a separate process. Goals: a speedup of at least 12x, and the
concurrent run within 1.3x of the ideal ``users x latency / concurrency``.

    python bench/bulk_concurrency.py            # 5,000 users (the sequential run alone takes ~2.5 min)
    python bench/bulk_concurrency.py --smoke    # 200 users
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import airflow_env, bench_parser, emulator_process, print_table

SPEEDUP_GOAL = 12.0
IDEAL_RATIO_GOAL = 1.3


def timed_run(users: int, concurrency: int) -> float:
    """Seconds SetAttributesOperator takes to write ``users`` new users at ``concurrency``."""
    from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

    records = [
        {"identifier": f"bench-c{concurrency}-{i}", "attributes": {"i": i, "segment": "bench"}}
        for i in range(users)
    ]
    operator: Any = SetAttributesOperator(
        task_id=f"set_c{concurrency}",
        kumulos_conn_id="kumulos_bench",
        records=records,
        max_concurrency=concurrency,
    )
    began = time.perf_counter()
    summary = operator.execute({})
    seconds = time.perf_counter() - began
    if summary["succeeded"] != users:
        raise RuntimeError(f"expected {users} writes, got {summary}")
    return seconds


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.025, help="seconds the emulator adds per request")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    users = 200 if args.smoke else args.users
    with tempfile.TemporaryDirectory(prefix="kumulos-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.update(airflow_env(workdir / "airflow"))
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        with emulator_process(0, workdir, extra_args=["--latency", str(args.latency)]) as emulator:
            os.environ["AIRFLOW_CONN_KUMULOS_BENCH"] = emulator.connection_json()
            sequential = timed_run(users, 1)
            concurrent = timed_run(users, args.concurrency)
    ideal = users * args.latency / args.concurrency
    speedup = sequential / concurrent
    ratio = concurrent / ideal
    print(f"\n{users:,} users, {args.latency * 1000:.0f} ms added latency per request")
    print_table(
        ["max_concurrency", "seconds", "users/s", "ideal seconds", "vs ideal"],
        [
            [
                1,
                f"{sequential:.2f}",
                f"{users / sequential:,.0f}",
                f"{users * args.latency:.2f}",
                f"{sequential / (users * args.latency):.2f}x",
            ],
            [
                args.concurrency,
                f"{concurrent:.2f}",
                f"{users / concurrent:,.0f}",
                f"{ideal:.2f}",
                f"{ratio:.2f}x",
            ],
        ],
    )
    print(
        f"speedup {speedup:.1f}x (goal >= {SPEEDUP_GOAL:.0f}x: {'met' if speedup >= SPEEDUP_GOAL else 'NOT met'})"
    )
    print(
        f"concurrent run / ideal {ratio:.2f}x (goal <= {IDEAL_RATIO_GOAL}x: {'met' if ratio <= IDEAL_RATIO_GOAL else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
