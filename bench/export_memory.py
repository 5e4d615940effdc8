"""Export memory: peak RSS of exporting 50,000 vs 500,000 users must differ by at most 10%.

Each size gets its own emulator process (not counted) and the export runs in a fresh subprocess
whose peak resident set size is read from VmHWM in /proc/<pid>/status. Memory that grew with the
number of users (anything but the dedupe table's 12-23 bytes per user) would show up as a gap.

Usage: ``python bench/export_memory.py [--users 500000] [--format jsonl] [--smoke]``; the small
size is a tenth of ``--users``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from export_throughput import emulator, measure


def main() -> None:
    """Measure both sizes and print peak RSS and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=500_000, help="the large size (the small one is a tenth)"
    )
    parser.add_argument("--format", default="jsonl", choices=["jsonl", "json", "csv", "parquet"])
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script still works")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.page_size = 5_000, 100
    sizes = [args.users // 10, args.users]
    print(f"export memory ({args.format}): {sizes[0]:,} vs {sizes[1]:,} users, pages of {args.page_size}")
    peaks = {}
    for users in sizes:
        with emulator(users) as base_url, tempfile.TemporaryDirectory() as workdir:
            output = Path(workdir) / f"users.{args.format}"
            result = measure("export", base_url, args.page_size, output, args.format)
            if result["users"] != users:
                raise SystemExit(f"exported {result['users']} users, expected {users}")
            peaks[users] = result["peak_rss_mb"]
            print(
                f"  {users:>9,} users: peak RSS {result['peak_rss_mb']:8.1f} MB in {result['seconds']:.1f} s"
            )
    small, large = peaks[sizes[0]], peaks[sizes[1]]
    print(
        f"peak RSS ratio large/small: {large / small:.3f} (goal <= 1.10); difference {large - small:.1f} MB"
    )


if __name__ == "__main__":
    main()
