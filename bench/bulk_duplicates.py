"""Counting duplicate identifiers in a bulk write: the on-disk digest table against a plain Python set.

Each way counts the duplicates among N identifiers (10% of them repeated) in a fresh child process
that reports its own peak RSS (VmHWM) and the seconds taken. The digest table (``DuplicateCounter``)
keeps 8-byte digests in a temporary SQLite file; the plain way keeps every identifier in a ``set``.
Goal for the table to stay: peak RSS flat from 100,000 to 1,000,000 identifiers (within 1.1x) while the
set's grows, at a cost per identifier that stays small next to one HTTP request (about 1 ms).

    python bench/bulk_duplicates.py            # 100,000 and 1,000,000 identifiers
    python bench/bulk_duplicates.py --smoke    # 2,000 and 20,000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from _common import bench_parser, peak_rss_kib, print_table, run_child

FLAT_GOAL = 1.10
WAYS = ("digest table", "set")


def identifier(i: int) -> str:
    """The ``i``-th identifier of the input; every tenth repeats the one nine places before it."""
    return f"user-{(i - 9 if i % 10 == 9 else i):08d}-segment-refresh"


def child(way: str, count: int) -> None:
    """Count the duplicates one way; print the count, the seconds and this process's peak RSS as JSON."""
    from airflow_provider_kumulos._dedupe import DuplicateCounter

    began = time.perf_counter()
    if way == "set":
        seen: set[str] = set()
        duplicates = 0
        for i in range(count):
            name = identifier(i)
            if name in seen:
                duplicates += 1
            else:
                seen.add(name)
    else:
        counter = DuplicateCounter()
        for i in range(count):
            counter.add(identifier(i))
        duplicates = counter.duplicates
        counter.close()
    seconds = time.perf_counter() - began
    print(json.dumps({"duplicates": duplicates, "seconds": seconds, "vmhwm_kib": peak_rss_kib(os.getpid())}))


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    sizes = (2_000, 20_000) if args.smoke else (100_000, 1_000_000)
    figures: dict[tuple[str, int], dict[str, float]] = {}
    for way in WAYS:
        for count in sizes:
            result = run_child([sys.executable, __file__, "--child", way, str(count)], env=dict(os.environ))
            if result.returncode != 0:
                raise RuntimeError(f"child failed:\n{result.stderr[-3000:]}")
            figures[way, count] = json.loads(result.stdout.strip().splitlines()[-1])
            assert figures[way, count]["duplicates"] == count // 10, figures[way, count]
    rows = [
        [
            way,
            f"{count:,}",
            f"{figures[way, count]['vmhwm_kib'] / 1024:.1f}",
            f"{figures[way, count]['seconds']:.2f}",
            f"{figures[way, count]['seconds'] / count * 1e6:.2f}",
        ]
        for way in WAYS
        for count in sizes
    ]
    print_table(["way", "identifiers", "peak RSS MiB", "seconds", "us per identifier"], rows)
    small, large = sizes
    for way in WAYS:
        ratio = figures[way, large]["vmhwm_kib"] / figures[way, small]["vmhwm_kib"]
        growth = (figures[way, large]["vmhwm_kib"] - figures[way, small]["vmhwm_kib"]) / 1024
        print(f"{way}: peak RSS {large:,} / {small:,} identifiers {ratio:.3f}x (+{growth:.1f} MiB)")
    table_ratio = figures["digest table", large]["vmhwm_kib"] / figures["digest table", small]["vmhwm_kib"]
    print(f"digest table flat within {FLAT_GOAL}x: {'met' if table_ratio <= FLAT_GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
