"""Sync state checkpoints: how long one pauses the bulk write, and how long its upload runs beside it.

A state listing 100,000 and then 1,000,000 users (seeded through the state module) is opened as a
run does, a batch of 1,000 records is classified and half of them settled, and a checkpoint is taken
five times. Figures: the pause of the reading thread (the only time the workers can run out of work:
commit plus a local copy of the working file) and the background part (dropping unsettled rows and
the atomic upload, here to a local path). Goal: the median pause at 1,000,000 users under 1 s, so a
60 s interval costs the write under 2% of its time.

    python bench/sync_checkpoint.py            # 100,000 and 1,000,000 users
    python bench/sync_checkpoint.py --smoke    # 2,000 and 20,000 users
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from _common import bench_parser, print_table

PAUSE_GOAL = 1.0
CHECKPOINTS = 5
API_KEY = "bench-api-key"


def seed_state(state: Path, users: int) -> None:
    """A state listing ``users`` users as synced, written through the state module."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Job
    from airflow_provider_kumulos._bulk.sync import BATCH, open_state

    with open_state(ObjectStoragePath(f"file://{state}"), API_KEY, full_refresh=False, save=True) as synced:
        for start in range(0, users, BATCH):
            jobs = [
                Job("seed", f"user-{i:08d}", {"segment": i % 5})
                for i in range(start, min(users, start + BATCH))
            ]
            synced.classify(jobs)
            for job in jobs:
                synced.settled(job, True)


def measure(state: Path) -> tuple[list[float], list[float], int]:
    """Seconds each checkpoint paused the reading thread, seconds each upload took, and the state's bytes."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Job
    from airflow_provider_kumulos._bulk.sync import open_state

    uploads = []
    with open_state(
        ObjectStoragePath(f"file://{state}"), API_KEY, full_refresh=False, save=True, checkpoint_interval=1e-9
    ) as synced:
        checkpoints = synced.checkpoints
        assert checkpoints is not None
        for round_ in range(CHECKPOINTS):
            jobs = [Job("bench", f"new-{round_}-{i:04d}", {"segment": "new"}) for i in range(1000)]
            synced.classify(jobs)
            for job in jobs[::2]:
                synced.settled(job, True)
            began = time.perf_counter()
            synced.tick()
            checkpoints.wait()
            uploads.append(time.perf_counter() - began - checkpoints.paused[-1])
        paused = list(checkpoints.paused)
    return paused, uploads, state.stat().st_size


def main() -> None:
    args = bench_parser(__doc__ or "").parse_args()
    sizes = (2_000, 20_000) if args.smoke else (100_000, 1_000_000)
    rows = []
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="kumulos-bench-") as tmp:
        for users in sizes:
            state = Path(tmp) / f"state-{users}.sqlite"
            seed_state(state, users)
            paused, uploads, size = measure(state)
            pause = statistics.median(paused)
            worst = max(worst, pause)
            rows.append(
                (
                    f"{users:,}",
                    f"{size / 1e6:.1f} MB",
                    f"{1000 * pause:.0f} ms (max {1000 * max(paused):.0f})",
                    f"{1000 * statistics.median(uploads):.0f} ms",
                    f"{100 * pause / 60:.2f}%",
                )
            )
    print_table(
        (
            "users in the state",
            "state file",
            "pause of the write (median)",
            "upload beside it",
            "cost at 60 s",
        ),
        rows,
    )
    verdict = "met" if worst < PAUSE_GOAL else "MISSED"
    print(f"goal: median pause under {PAUSE_GOAL:g} s at every size: {verdict}")


if __name__ == "__main__":
    main()
