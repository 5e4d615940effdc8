"""A burst of deferred sensors in the real triggerer: 100 ``KumulosUserSensor`` tasks wait at once.

All of them must defer (the triggerer claims their triggers and polls for the missing users), all
must succeed once the users are created through the emulator's admin API, and while they wait the
triggerer must never log that its event loop was blocked (Airflow's watchdog warns once a loop
iteration overruns ``[triggerer] blocked_main_thread_warning_threshold``, 0.2 s by default).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from e2e_checks import Figures
from e2e_emulator import EmulatorAdmin
from e2e_leaks import person
from e2e_procs import DeploymentError, ServiceGroup, base_env, wait_for
from e2e_rest import AirflowAPI

DAG_ID = "kumulos_e2e_sensor_burst"
SENSOR = "wait_for_user"
BLOCKED = "async thread was blocked"


def sensor_burst(
    api: AirflowAPI,
    emulator: EmulatorAdmin,
    services: ServiceGroup,
    triggerer_log: Path,
    figures: Figures,
    count: int = 100,
) -> str | None:
    """Defer ``count`` sensors, create their users and require every sensor to succeed (raises
    otherwise). Returns the blocked-loop warnings the triggerer logged meanwhile, described, or
    None: the caller fails the run for them once the other phases have run too."""
    prefix = f"e2e-burst-{uuid.uuid4().hex[:8]}"
    user_ids = [f"{prefix}-{number:03d}" for number in range(count)]
    log_start = triggerer_log.stat().st_size
    ticker = services.start(
        "loop-ticker", [sys.executable, str(Path(__file__).with_name("e2e_ticker.py"))], base_env()
    )
    try:
        _burst(api, emulator, services, figures, prefix, user_ids)
    finally:
        services.stop(ticker)
    warnings = [
        line
        for line in triggerer_log.read_bytes()[log_start:].decode(errors="replace").splitlines()
        if BLOCKED in line
    ]
    machine = ticker.log_path.read_text().count("bare loop blocked")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    figures.add(
        "sensor burst: triggerer watchdog",
        f"{len(warnings)} '{BLOCKED}' warnings; a bare event loop beside it overran the same threshold "
        f"{machine} times (load average {load})",
    )
    if not warnings:
        return None
    return (
        f"the triggerer logged {len(warnings)} '{BLOCKED}' warnings while {len(user_ids)} sensors waited "
        f"(a bare event loop on this machine overran the same threshold {machine} times meanwhile; "
        f"load average {load}), e.g. {warnings[:2]}"
    )


def _burst(
    api: AirflowAPI,
    emulator: EmulatorAdmin,
    services: ServiceGroup,
    figures: Figures,
    prefix: str,
    user_ids: list[str],
) -> None:
    """One run of ``len(user_ids)`` deferred sensors, from trigger to success."""
    count = len(user_ids)
    emulator.clear_requests()
    api.unpause(DAG_ID)
    started = time.monotonic()
    run_id = api.trigger(DAG_ID, {"prefix": prefix, "count": count})
    peak = Counter[str]()

    def all_deferred() -> bool | None:
        states = api.task_states(DAG_ID, run_id, SENSOR)
        peak["deferred"] = max(peak["deferred"], states["deferred"])
        bad = {state: n for state, n in states.items() if state in ("failed", "upstream_failed", "success")}
        if bad:
            raise DeploymentError(f"sensors left waiting before their users existed: {dict(states)}")
        return True if states["deferred"] == count else None

    wait_for(
        f"all {count} sensors to be deferred", all_deferred, timeout=300, services=services, interval=1.0
    )
    deferred_s = time.monotonic() - started
    # The worker looks once before deferring; a second miss for a user came from its trigger.
    wait_for(
        "the triggerer to poll for every user",
        lambda: True if all(n >= 2 for n in _misses(emulator, user_ids).values()) else None,
        timeout=120,
        interval=1.0,
    )
    polls = _misses(emulator, user_ids)
    for identifier in user_ids:
        emulator.add_user(identifier, {"source": "e2e-burst", **person("burst")})
    created = time.monotonic()
    state = api.wait_run(DAG_ID, run_id, 300, services.check_alive)
    completed_s = time.monotonic() - created
    states = api.task_states(DAG_ID, run_id, SENSOR)
    if state != "success" or states["success"] != count:
        raise DeploymentError(f"sensor burst run ended {state}: {dict(states)}")
    figures.add(
        "sensor burst: deferred",
        f"{count} sensors deferred {deferred_s:.1f}s after the trigger (peak {peak['deferred']} at once); "
        f"{sum(polls.values()) - count} trigger polls answered 404 before the users existed",
    )
    figures.add(
        "sensor burst: completion",
        f"all {count} succeeded, the run {completed_s:.1f}s after the users were created",
    )


def _misses(emulator: EmulatorAdmin, user_ids: list[str]) -> Counter[str]:
    """Lookups per user answered 404."""
    wanted = set(user_ids)
    return Counter(
        entry["identifier"]
        for entry in emulator.requests()
        if entry.get("identifier") in wanted and entry["method"] == "GET" and entry["status"] == 404
    )
