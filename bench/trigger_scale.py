"""Deferred sensors at scale: hundreds of KumulosUserTriggers waiting together on one event loop.

For 300 and 1,000 triggers started together in one event loop, each waiting (``poke_interval`` 2 s,
5 polls due: 8 s from its first poll, which comes within its first interval) for a user that does
not exist yet, against the emulator running as its own process, a
fresh child process per run reports: memory per waiting trigger (its VmHWM over its resident memory
before the start), the longest event-loop stall (a ticker task measures how late its 10 ms sleeps
wake, as Airflow's triggerer watchdog does) and the longest garbage-collector pass within it,
polls made against polls due (counted by the emulator), and CPU seconds. ``--baseline DIR`` measures an older checkout of the package (put first
on PYTHONPATH) in the same run, for before/after figures.

Goals at 300 triggers: <= 100 KiB per trigger, stall <= 100 ms, >= 4 of 5 polls made.

    python bench/trigger_scale.py                             # 300 and 1,000 triggers, 3 runs each
    python bench/trigger_scale.py --baseline ../old-checkout  # the same for an older checkout too
    python bench/trigger_scale.py --smoke                     # 20 triggers for 2 s, one run
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from _common import ROOT, airflow_env, bench_parser, emulator_process, print_table, run_child

CONN_ID = "kumulos_bench"
TICK = 0.01
RESULT_MARK = "TRIGGER-SCALE-RESULT "
GOALS = {"kib_per_trigger": 100.0, "stall_ms": 100.0, "polls_made": 4.0}


# --- child: the triggers and the measurements -----------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(triggers: int, window: float, poke: float, warm_user: str) -> dict[str, Any]:
    """Warm up with one trigger, then run ``triggers`` waiting ones for ``window`` seconds."""
    import asyncio
    import gc
    import time

    from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

    warm = await anext(KumulosUserTrigger(warm_user, CONN_ID, poke_interval=poke).run())
    if warm.payload.get("status") != "success":
        raise RuntimeError(f"warm-up trigger failed: {warm.payload}")
    gc.collect()
    loop = asyncio.get_running_loop()
    stall = 0.0

    async def ticker() -> None:
        nonlocal stall
        while True:
            before = loop.time()
            await asyncio.sleep(TICK)
            stall = max(stall, loop.time() - before - TICK)

    gc_pass = {"started": 0.0, "longest": 0.0}

    def timed_gc(phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            gc_pass["started"] = now
        else:
            gc_pass["longest"] = max(gc_pass["longest"], now - gc_pass["started"])

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.2)
    stall = 0.0
    gc.callbacks.append(timed_gc)
    before_kib = _status_kib("VmRSS")
    cpu_before = _cpu_seconds()
    started_at = time.time()
    tasks = [
        asyncio.ensure_future(anext(KumulosUserTrigger(f"waiting-{n}", CONN_ID, poke_interval=poke).run()))
        for n in range(triggers)
    ]
    await asyncio.sleep(window)
    cpu = _cpu_seconds() - cpu_before
    longest_stall = stall
    gc.callbacks.remove(timed_gc)
    fired = [task.result().payload for task in tasks if task.done() and not task.cancelled()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ticking.cancel()
    return {
        "triggers": triggers,
        "kib_per_trigger": (_status_kib("VmHWM") - before_kib) / triggers,
        "stall_ms": longest_stall * 1000,
        "gc_ms": gc_pass["longest"] * 1000,
        "cpu_seconds": cpu,
        "started_at": started_at,
        "events_before_the_end": fired[:3],
    }


def child_main(triggers: int, window: float, poke: float, warm_user: str) -> None:
    """Run one measurement and print its figures as one JSON line."""
    import asyncio

    result = asyncio.run(_measure(triggers, window, poke, warm_user))
    print(RESULT_MARK + json.dumps(result), flush=True)


# --- parent: emulator, child runs, counting polls ----------------------------------------------


def _admin(base_url: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{base_url}/_emulator/{path}", method=method)
    with urllib.request.urlopen(request, timeout=60) as answer:
        body = answer.read()
    return json.loads(body) if body else None


def _polls_per_trigger(base_url: str, started_at: float, window: float, triggers: int) -> float:
    """Mean requests per waiting trigger that the emulator received within the window."""
    logged = _admin(base_url, "requests")["requests"]
    _admin(base_url, "requests", method="DELETE")
    counts = Counter(
        entry["identifier"]
        for entry in logged
        if (entry.get("identifier") or "").startswith("waiting-")
        and started_at <= entry["timestamp"] <= started_at + window
    )
    return sum(counts.values()) / triggers


def measure(
    env: dict[str, str], base_url: str, warm_user: str, triggers: int, seconds: float, poke: float
) -> dict[str, Any]:
    """One fresh child process running ``triggers`` waiting triggers; its figures and the polls made."""
    # A trigger's first poll comes at a random moment of its first poke interval, so every trigger
    # has 1 + seconds // poke polls due in a window one interval longer than ``seconds``.
    window = seconds + poke
    command = [sys.executable, __file__, "--child", str(triggers), str(window), str(poke), warm_user]
    child = run_child(command, env=env, timeout=600)
    lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if child.returncode != 0 or not lines:
        raise RuntimeError(
            f"child failed ({child.returncode}):\n{child.stdout[-2000:]}\n{child.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    result["polls_made"] = _polls_per_trigger(base_url, result["started_at"], window, triggers)
    result["polls_due"] = 1 + math.floor(seconds / poke)
    return result


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--baseline", type=Path, help="an older checkout of the package to measure too")
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--poke-interval", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=4, help=__import__("argparse").SUPPRESS)
    args = parser.parse_args()
    if args.child:
        triggers, window, poke, warm_user = args.child
        child_main(int(triggers), float(window), float(poke), warm_user)
        return
    sizes, seconds, poke, repeat = args.sizes, args.seconds, args.poke_interval, args.repeat
    if args.smoke:
        sizes, seconds, poke, repeat = [20], 2.0, 0.5, 1
    variants = {"this checkout": str(ROOT)}
    if args.baseline:
        variants = {"baseline": str(args.baseline.resolve()), **variants}
    with tempfile.TemporaryDirectory(prefix="kumulos-bench-") as tmp:
        workdir = Path(tmp)
        base_env = airflow_env(workdir / "airflow")
        base_env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        with emulator_process(10, workdir) as emulator:
            base_env[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = emulator.connection_json()
            warm_user = _admin(emulator.base_url, "users")["identifiers"][0]
            runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
            for size in sizes:
                for _ in range(repeat):
                    for name, path in variants.items():
                        env = {**base_env, "PYTHONPATH": os.pathsep.join([path, str(ROOT / "bench")])}
                        runs.setdefault((size, name), []).append(
                            measure(env, emulator.base_url, warm_user, size, seconds, poke)
                        )
    report(runs, seconds, poke, repeat)


def _median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(result[key] for result in results)


def report(
    runs: dict[tuple[int, str], list[dict[str, Any]]], seconds: float, poke: float, repeat: int
) -> None:
    """The figures per size and variant (medians of the runs), and the goals at the smallest size."""
    print(
        f"\nKumulosUserTriggers started together on one event loop, each waiting for a missing user: "
        f"poke_interval={poke:g} s for {seconds:g} s; median of {repeat} run(s) each"
    )
    rows = []
    for (size, name), results in runs.items():
        early = sum(len(result["events_before_the_end"]) for result in results)
        rows.append(
            [
                f"{size:,} triggers, {name}",
                f"{_median(results, 'kib_per_trigger'):.0f}",
                f"{_median(results, 'stall_ms'):.0f}",
                f"{_median(results, 'gc_ms'):.0f}",
                f"{_median(results, 'polls_made'):.2f} of {results[0]['polls_due']}",
                f"{_median(results, 'cpu_seconds'):.2f}",
                str(early),
            ]
        )
    print_table(
        [
            "run",
            "KiB per trigger",
            "longest stall ms",
            "of it GC ms",
            "polls per trigger",
            "CPU s",
            "ended early",
        ],
        rows,
    )
    smallest = min(size for size, _ in runs)
    current = runs[(smallest, "this checkout")]
    baseline = runs.get((smallest, "baseline"))
    for key, goal in GOALS.items():
        value = _median(current, key)
        met = value >= goal if key == "polls_made" else value <= goal
        versus = f", baseline {_median(baseline, key):.2f}" if baseline else ""
        print(
            f"{smallest} triggers: {key} {value:.2f}{versus} (goal {goal:g}: {'met' if met else 'NOT met'})"
        )
    if baseline:
        ratio = _median(current, "cpu_seconds") / _median(baseline, "cpu_seconds")
        print(f"{smallest} triggers: CPU {ratio:.2f}x the baseline's")


if __name__ == "__main__":
    main()
