"""Drift-proof sync: what a second run costs, and what it leaves wrong, when the app overwrote users.

Speed: a 100,000-row JSONL model is synced with ``sync_state_path`` to an emulator process that adds
25 ms per answer, at max_concurrency=16 (run 1). Then 1% of the model changes and the app overwrites
another 1% of the users in Kumulos (``POST /_emulator/associate``: their attribute sets replaced, as
the mobile SDK does). Run 2 is measured several ways, each from that same starting point (Kumulos is
put back between them): ``reconcile=True`` with and without ``merge``, ``reconcile_from`` an export
written just before, state only, and ``full_refresh``. Printed per way: listing pages, requests per
changed-or-overwritten user besides the listing, users left differing from the model, and time
against run 1, wall and CPU (the CPU this process used: on a machine shared with other work, wall
time inflates CPU-bound runs more than the latency-bound run 1, the CPU ratio does not). Goals for reconcile: at most 100 listing pages (0 with ``reconcile_from``), at most
1.05 requests per changed-or-overwritten user (2.1 with merge), 0 users left differing, at least
10x faster than run 1.

Memory: reconciling 100,000 and 1,000,000 users (1% of the model changed, no sync state) in a fresh
child process that reports its own peak RSS (VmHWM), against an emulator with no added latency that
holds the model's attributes. Goal: 1,000,000 within 1.2x of 100,000.

    python bench/reconcile.py            # the sizes above
    python bench/reconcile.py --smoke    # 2,000 rows; 2,000 and 20,000 for memory
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from _common import (
    EmulatorProcess,
    airflow_env,
    bench_parser,
    emulator_process,
    peak_rss_kib,
    print_table,
    run_child,
)

PAGES_PER_100K = 100
REQUESTS_GOAL = 1.05
MERGE_REQUESTS_GOAL = 2.1
SPEEDUP_GOAL = 10.0
MEMORY_GOAL = 1.2
CHANGED = 0.01
OVERWRITTEN = 0.01
#: What the app writes for the users it overwrites (replacing their whole attribute set).
APP_ATTRIBUTES = {"appVersion": "3.2.0", "pushOptIn": True}
APP_SEED = 7
API_KEY = "bench-api-key"
CONNECTION = "AIRFLOW_CONN_KUMULOS_BENCH"
PAGE = 1000


def attributes(i: int, version: int) -> dict[str, Any]:
    """Row ``i``'s segment attributes; rows picked for a change get ``version`` in them."""
    return {"segment": f"seg-{i % 5}", "ltv_band": i % 7, "version": version}


def identifier(i: int) -> str:
    """Row ``i``'s user identifier."""
    return f"user-{i:08d}"


def write_model(path: Path, rows: int, changed: set[int]) -> dict[str, dict[str, Any]]:
    """``rows`` users as JSONL, version 1 for the ``changed`` rows; returns the model by identifier."""
    model: dict[str, dict[str, Any]] = {}
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            ident, wanted = identifier(i), attributes(i, int(i in changed))
            model[ident] = wanted
            out.write(json.dumps({"identifier": ident, "attributes": wanted}) + "\n")
    return model


def held(emulator: EmulatorProcess, latency: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """What Kumulos holds, user by user, read with the emulator's added latency off meanwhile."""
    emulator.admin("faults", "POST", {"latency": 0})
    try:
        yield from emulator.held_attributes(PAGE)
    finally:
        emulator.admin("faults", "POST", {"latency": latency})


def differs(holds: dict[str, Any] | None, wanted: dict[str, Any], merge: bool) -> bool:
    """Whether Kumulos's attributes miss what the model asks: every key equal with merge, else the set."""
    if holds is None:
        return True
    if merge:
        return any(key not in holds or holds[key] != value for key, value in wanted.items())
    return holds != wanted


@dataclass(frozen=True)
class Timed:
    """One operator run: wall seconds, CPU seconds of this process (every thread), its summary."""

    seconds: float
    cpu_seconds: float
    summary: dict[str, Any]


@dataclass
class Way:
    """One way of running the second sync: its operator options and what it cost."""

    name: str
    options: dict[str, Any]
    merge: bool = False
    goal: float | None = None
    max_pages: int | None = None
    run: Timed = Timed(0.0, 0.0, {})
    pages: int = 0
    other_requests: int = 0
    left: int = 0


def sync(source: Path, state: Path | None, **options: Any) -> Timed:
    """One SetAttributesOperator run in this process."""
    from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

    operator: Any = SetAttributesOperator(
        task_id="sync",
        kumulos_conn_id="kumulos_bench",
        source_path=str(source),
        sync_state_path=None if state is None else str(state),
        max_concurrency=16,
        **options,
    )
    began, cpu = time.perf_counter(), time.process_time()
    summary = operator.execute({})
    return Timed(time.perf_counter() - began, time.process_time() - cpu, summary)


def export(path: Path) -> Timed:
    """ExportUsersOperator to JSONL, as a DAG does before it reconciles."""
    from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator

    operator: Any = ExportUsersOperator(
        task_id="export", kumulos_conn_id="kumulos_bench", output_path=str(path), max_concurrency=8
    )
    began, cpu = time.perf_counter(), time.process_time()
    summary = operator.execute({})
    return Timed(time.perf_counter() - began, time.process_time() - cpu, summary)


def request_counts(emulator: EmulatorProcess) -> dict[str, int]:
    """The emulator's API answers since its log was last emptied, per method and status (``PUT 200``...)."""
    return dict(emulator.admin("stats")["requests"])


def restore(emulator: EmulatorProcess, before: dict[str, dict[str, Any]], latency: float) -> None:
    """Put back every user whose attributes differ from ``before`` (not API requests: admin PUTs)."""
    for ident, holds in list(held(emulator, latency)):
        if before.get(ident) != holds:
            emulator.admin(f"users/{quote(ident, safe='')}/attributes", "PUT", before[ident])


def measure(
    way: Way,
    emulator: EmulatorProcess,
    run: Callable[[], Timed],
    model: dict[str, Any],
    latency: float,
) -> None:
    """Run one way from the current state; fill in its time, requests and users left differing."""
    emulator.admin("requests", "DELETE")  # the log and the counters start again from zero
    way.run = run()
    delta = request_counts(emulator)
    gets = sum(count for name, count in delta.items() if name.startswith("GET "))
    if gets:
        logged = emulator.admin("requests")["requests"]
        way.pages = sum(1 for entry in logged if entry["path"] == "/v2/users")
    way.other_requests = sum(delta.values()) - way.pages
    holds = dict(held(emulator, latency))
    way.left = sum(1 for ident, wanted in model.items() if differs(holds.get(ident), wanted, way.merge))


def speed(rows: int, latency: float, workdir: Path) -> None:
    """Run 1, then the model changes and the app overwrites users; run 2 measured each way."""
    source, state, first_state = workdir / "model.jsonl", workdir / "state.sqlite", workdir / "run1.sqlite"
    with emulator_process(0, workdir, api_key=API_KEY, extra_args=["--latency", str(latency)]) as emulator:
        os.environ[CONNECTION] = emulator.connection_json()
        write_model(source, rows, set())
        first = sync(source, state)
        shutil.copy(state, first_state)
        step = int(1 / CHANGED)
        changed = {identifier(i) for i in range(0, rows, step)}
        model = write_model(source, rows, set(range(0, rows, step)))
        body = {"share": OVERWRITTEN, "seed": APP_SEED, "attributes": APP_ATTRIBUTES}
        overwritten = set(emulator.admin("associate", "POST", body)["identifiers"])
        targets = changed | overwritten
        before = dict(held(emulator, latency))
        export_path = workdir / "export.jsonl"
        pages = -(-rows // PAGE)
        ways = [
            Way("reconcile=True", {"reconcile": True}, goal=REQUESTS_GOAL, max_pages=pages),
            Way(
                "reconcile=True, merge=True",
                {"reconcile": True},
                merge=True,
                goal=MERGE_REQUESTS_GOAL,
                max_pages=pages,
            ),
            Way(
                "reconcile_from=export", {"reconcile_from": str(export_path)}, goal=REQUESTS_GOAL, max_pages=0
            ),
            Way("state only", {}),
            Way("full_refresh", {"full_refresh": True}),
        ]
        exported: Timed | None = None
        for way in ways:
            restore(emulator, before, latency)
            shutil.copy(first_state, state)
            if "reconcile_from" in way.options:
                exported = export(export_path)

            def run(way: Way = way) -> Timed:
                return sync(source, state, merge=way.merge, **way.options)

            measure(way, emulator, run, model, latency)
    report(rows, latency, first, len(changed), len(overwritten), len(targets), ways, exported)


def report(
    rows: int,
    latency: float,
    first: Timed,
    changed: int,
    overwritten: int,
    targets: int,
    ways: list[Way],
    exported: Timed | None,
) -> None:
    """The speed table and one line per goal."""
    print(
        f"\n{rows:,} rows, {latency * 1000:.0f} ms per answer, max_concurrency=16; run 1 sent "
        f"{first.summary['succeeded']:,} in {first.seconds:.1f} s ({first.cpu_seconds:.1f} s of CPU); then {changed:,} rows changed in the model and "
        f"the app overwrote {overwritten:,} users ({targets:,} distinct users to correct)"
    )
    table = []
    for way in ways:
        table.append(
            [
                way.name,
                f"{way.run.seconds:.2f}",
                f"{first.seconds / way.run.seconds:.1f}x",
                f"{way.run.cpu_seconds:.2f}",
                f"{first.cpu_seconds / way.run.cpu_seconds:.1f}x",
                way.pages,
                way.other_requests,
                f"{way.other_requests / targets:.3f}",
                way.run.summary.get("succeeded", 0),
                way.run.summary.get("unchanged", 0),
                way.run.summary.get("drifted", "-"),
                way.left,
            ]
        )
    print_table(
        [
            "run 2",
            "seconds",
            "vs run 1",
            "CPU s",
            "vs run 1",
            "listing pages",
            "other requests",
            "per user to correct",
            "sent",
            "unchanged",
            "drifted",
            "left differing",
        ],
        table,
    )
    if exported is not None:
        print(
            f"(the export read by reconcile_from took {exported.seconds:.2f} s and "
            f"{exported.summary['pages_fetched']} pages, before run 2)"
        )
    for way in ways:
        if way.goal is None:
            continue
        ratio = way.other_requests / targets
        speedup = first.seconds / way.run.seconds
        max_pages = way.max_pages if way.max_pages is not None else 0
        met = way.pages <= max_pages and ratio <= way.goal and way.left == 0 and speedup >= SPEEDUP_GOAL
        print(
            f"{way.name}: {way.pages} listing pages (goal <= {max_pages}), {ratio:.3f} requests per user "
            f"to correct (goal <= {way.goal}), {way.left} left differing (goal 0), {speedup:.1f}x faster "
            f"than run 1 (goal >= {SPEEDUP_GOAL:.0f}x): {_verdict(met)}"
        )


def write_held_model(emulator: EmulatorProcess, path: Path, changed_every: int) -> int:
    """The emulator's users as a JSONL model, every ``changed_every``-th one with a new segment key."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for number, (ident, holds) in enumerate(held(emulator, 0.0)):
            if number % changed_every == 0:
                holds = {**holds, "segment": "refreshed"}
            out.write(json.dumps({"identifier": ident, "attributes": holds}) + "\n")
            count += 1
    return count


def child(source: str) -> None:
    """Reconcile ``source`` (no state); print the summary, seconds and this process's peak RSS."""
    run = sync(Path(source), None, reconcile=True)
    figures = {"summary": run.summary, "seconds": run.seconds, "vmhwm_kib": peak_rss_kib(os.getpid())}
    print(json.dumps(figures))


def memory(sizes: tuple[int, int], workdir: Path) -> None:
    """Peak RSS of a fresh child reconciling each size, 1% changed, against an emulator holding the rest."""
    env = {**os.environ}
    figures: dict[int, dict[str, Any]] = {}
    for users in sizes:
        with emulator_process(users, workdir, api_key=API_KEY, env=env) as emulator:
            env[CONNECTION] = emulator.connection_json()
            source = workdir / f"held-{users}.jsonl"
            write_held_model(emulator, source, int(1 / CHANGED))
            result = run_child([sys.executable, __file__, "--child", str(source)], env=env, timeout=3600)
            if result.returncode != 0:
                raise RuntimeError(f"child failed:\n{result.stderr[-3000:]}")
            figures[users] = json.loads(result.stdout.strip().splitlines()[-1])
            source.unlink()
    table = []
    for users, figure in figures.items():
        summary = figure["summary"]
        table.append(
            [
                f"{users:,}",
                f"{figure['vmhwm_kib'] / 1024:.1f}",
                f"{figure['seconds']:.1f}",
                summary["succeeded"],
                summary["unchanged"],
            ]
        )
    small, large = sizes
    ratio = figures[large]["vmhwm_kib"] / figures[small]["vmhwm_kib"]
    print("\nReconcile (no state, 1% changed, no added latency; fresh child per size)")
    print_table(["users", "peak RSS MiB", "seconds", "sent", "unchanged"], table)
    print(
        f"peak RSS {large:,} / {small:,} users: {ratio:.3f}x "
        f"(goal <= {MEMORY_GOAL}x: {_verdict(ratio <= MEMORY_GOAL)})"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.025, help="seconds the emulator adds per answer")
    parser.add_argument("--skip-memory", action="store_true", help="only the speed part")
    parser.add_argument("--skip-speed", action="store_true", help="only the memory part")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    rows = 2_000 if args.smoke else args.rows
    sizes = (2_000, 20_000) if args.smoke else (100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="kumulos-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.update(airflow_env(workdir / "airflow"))
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        if not args.skip_speed:
            speed(rows, args.latency, workdir)
        if not args.skip_memory:
            memory(sizes, workdir)


if __name__ == "__main__":
    main()
