"""Scenario 1, flaky API: a 50,000-user export survives 5xx, 429, dropped and too-slow answers exactly.

A real DAG run (``dag.test()``) exports every user while the emulator injects about 10% 5xx, 5%
429 with ``Retry-After: 1`` (capped at 0.05 s by the connection's ``max_retry_after``), 2% dropped
connections and 1% answers slower than the 0.5 s read timeout. The file must hold exactly the
emulator's users, each object equal to the emulator's, none twice; the hook must have retried once
per failed attempt (its own summary line says how many) and never given up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_support import FAST_EXTRAS, FLAKY_RATES, Figures, Stopwatch, fault_breakdown

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

USERS = 50_000
PAGE_SIZE = 250
#: Chosen so that every fault kind of the mix occurs at least once in this run.
FAULT_SEED = 7

DAG = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.operators.export import ExportUsersOperator

with DAG("reliability_flaky_export", schedule=None, start_date=datetime(2026, 1, 1)):
    ExportUsersOperator(
        task_id="export",
        kumulos_conn_id="kumulos_flaky",
        output_path={output!r},
        page_size={page_size},
        progress_interval=5,
    )
"""
#: The export's one summary line in the task log: "... requests N, retries M, rate-limit waits K ...".
SUMMARY = re.compile(
    r"Kumulos export finished: .*requests ([\d,]*\d), retries ([\d,]*\d)"
    r"(?:, rate-limit waits ([\d,]*\d))?"
)


def _number(text: str | None) -> int:
    return int((text or "0").replace(",", ""))


@pytest.mark.slow
def test_export_under_faults_equals_the_emulator_exactly(
    dag_runner: Any,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator = emulator_factory(users=USERS)
    connect(emulator, "kumulos_flaky", **FAST_EXTRAS)
    emulator.set_fault_rates(**FLAKY_RATES, seed=FAULT_SEED)
    output = tmp_path / "users.jsonl"

    run = dag_runner.run(DAG.format(output=str(output), page_size=PAGE_SIZE), "reliability_flaky_export")

    assert dag_runner.states(run) == {"export": "success"}
    summary = dag_runner.xcom(run, "export")
    faults = fault_breakdown(emulator)
    assert all(faults.values()), f"every fault kind must occur at least once: {faults}"

    checked = _check_export_matches(output, emulator)
    assert checked == summary["users_written"] == USERS
    assert summary["pages_fetched"] == USERS // PAGE_SIZE and summary["count_mismatch"] is None

    logged = SUMMARY.search(capfd.readouterr().out)
    assert logged is not None, "the export's summary line is missing from the task log"
    requests, retries, rate_limit_waits = (_number(group) for group in logged.groups())
    # One retry per failed attempt: every injected fault, plus any answer a busy machine made later
    # than the read timeout (counted as a figure, expected to be rare).
    assert requests == emulator.stats()["total"] == USERS // PAGE_SIZE + retries
    assert retries >= sum(faults.values())
    assert retries - sum(faults.values()) <= retries // 10, "far more timeouts than the injected slow answers"
    assert rate_limit_waits == faults["429"]
    figures.record(
        "1 flaky export",
        users_checked=checked,
        requests=requests,
        faults=faults,
        retries=retries,
        timeouts_under_load=retries - sum(faults.values()),
        duration_s=watch.seconds,
    )


def _check_export_matches(output: Path, emulator: KumulosEmulator) -> int:
    """Stream the file: each line equals the emulator's user of that identifier, no identifier twice,
    and together they are every identifier the emulator holds. Returns the number of users checked."""
    seen: set[str] = set()
    with output.open("rb") as lines:
        for line in lines:
            user = json.loads(line)
            identifier = user["identifier"]
            assert identifier not in seen, f"{identifier!r} exported twice"
            seen.add(identifier)
            assert user == emulator.get_user(identifier), f"{identifier!r} differs from the emulator"
    assert seen == set(emulator.user_ids())
    return len(seen)
