"""Scenario 2, flaky API: 5,000 attribute updates and 1,000 deletes reach the intended state, or say why not.

Both operators run in real DAG runs (``dag.test()``), reading their records from files, while the
emulator injects the same fault mix as the export scenario (10% 5xx, 5% 429, 2% dropped, 1% past
the 0.5 s read timeout; backoff shortened and ``Retry-After`` capped through connection extras).

* Default retry settings (5 retries): the emulator's final state is the intended one. A record
  fails only if all six of its attempts meet a fault (about 0.18^6 = 3.4e-5 per record); such a
  record must be in the failures file, and feeding that file back converges.
* Retries off (``max_retries=0``): about one record in five fails. Every failed record is in the
  failures file, succeeded + failed (+ missing) == total, and every record not in the failures file
  is in its intended state. Feeding the failures files back then converges.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pytest
from reliability_support import FAST_EXTRAS, FLAKY_RATES, Figures, Stopwatch, fault_breakdown

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

USERS = 6_000
UPDATES = 5_000
NEW_USERS = 1_000  # of the updates, users that do not exist yet (PUT creates them)
DELETES = 1_000

DAG = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator

with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)):
    SetAttributesOperator(
        task_id="set",
        kumulos_conn_id={conn_id!r},
        source_path={updates!r},
        failures_path={set_failures!r},
    )
    DeleteAttributesOperator(
        task_id="delete",
        kumulos_conn_id={conn_id!r},
        source_path={deletes!r},
        failures_path={delete_failures!r},
    )
"""


class Plan:
    """The records to send and the state they must leave behind, as files a DAG can read."""

    def __init__(self, emulator: KumulosEmulator, folder: Path) -> None:
        existing = emulator.user_ids()
        set_ids = existing[: UPDATES - NEW_USERS] + [f"reliability-new-{n:04d}" for n in range(NEW_USERS)]
        self.delete_ids = existing[UPDATES - NEW_USERS : UPDATES - NEW_USERS + DELETES]
        self.updates = {
            identifier: {"tier": ("gold", "silver", "bronze")[n % 3], "score": n, "tags": ["r", str(n % 7)]}
            for n, identifier in enumerate(set_ids)
        }
        self.intended = {identifier: emulator.get_attributes(identifier) for identifier in existing}
        self.intended.update(self.updates)
        self.intended.update({identifier: {} for identifier in self.delete_ids})
        self.folder = folder
        self.updates_path = folder / "updates.jsonl"
        self.deletes_path = folder / "deletes.txt"
        with self.updates_path.open("w") as out:
            for identifier, attributes in self.updates.items():
                out.write(json.dumps({"identifier": identifier, "attributes": attributes}) + "\n")
        self.deletes_path.write_text("".join(f"{identifier}\n" for identifier in self.delete_ids))

    def dag(self, dag_id: str, conn_id: str, updates: Path, deletes: Path, attempt: str) -> str:
        """DAG source running both operators on ``updates`` and ``deletes``."""
        return DAG.format(
            dag_id=dag_id,
            conn_id=conn_id,
            updates=str(updates),
            deletes=str(deletes),
            set_failures=str(self.failures("set", attempt)),
            delete_failures=str(self.failures("delete", attempt)),
        )

    def failures(self, task: str, attempt: str) -> Path:
        return self.folder / f"{task}-failures-{attempt}.jsonl"

    def off_target(self, emulator: KumulosEmulator, skip: Collection[str] = ()) -> list[str]:
        """Identifiers (not in ``skip``) whose attributes differ from the intended state."""
        skipped = set(skip)
        return [
            identifier
            for identifier, attributes in self.intended.items()
            if identifier not in skipped and emulator.get_attributes(identifier) != attributes
        ]


def _failed_ids(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [json.loads(line)["identifier"] for line in lines]


def _reasons(path: Path) -> Counter[str]:
    """Failed records by cause, from the error each failures-file line carries."""
    reasons: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        error = json.loads(line)["error"]
        if error["type"] != "KumulosTransportError":
            reasons[error["type"]] += 1
        elif "no answer within the timeout" in error["message"]:
            reasons["read timeout"] += 1
        else:
            reasons["connection dropped"] += 1
    return reasons


def _run(dag_runner: Any, source: str, dag_id: str) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    run = dag_runner.run(source, dag_id)
    return dag_runner.states(run), dag_runner.xcom(run, "set"), dag_runner.xcom(run, "delete")


@pytest.mark.slow
def test_default_retries_reach_the_intended_state(
    dag_runner: Any,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator = emulator_factory(users=USERS)
    plan = Plan(emulator, tmp_path)
    conn_id = connect(emulator, "kumulos_flaky_bulk", **FAST_EXTRAS)
    emulator.set_fault_rates(**FLAKY_RATES, seed=11)

    states, set_summary, delete_summary = _run(
        dag_runner,
        plan.dag("reliability_bulk_retries", conn_id, plan.updates_path, plan.deletes_path, "1"),
        "reliability_bulk_retries",
    )
    faults = fault_breakdown(emulator)
    emulator.clear_faults()
    exhausted = _failed_ids(plan.failures("set", "1")) + _failed_ids(plan.failures("delete", "1"))
    assert set_summary["succeeded"] + set_summary["failed"] == set_summary["total"] == UPDATES
    assert delete_summary["succeeded"] + delete_summary["missing"] + delete_summary["failed"] == DELETES
    assert set_summary["failed"] + delete_summary["failed"] == len(exhausted)
    assert states == {
        "set": "failed" if set_summary["failed"] else "success",
        "delete": "failed" if delete_summary["failed"] else "success",
    }
    # Only a record whose every attempt met a fault may be off target, and it is in a failures file.
    assert set(plan.off_target(emulator)) <= set(exhausted)
    assert len(exhausted) <= 3, f"far more exhausted records than 0.18^6 predicts: {exhausted}"
    if exhausted:
        _feed_back(dag_runner, plan, conn_id, "1", "retry-exhausted")
    assert plan.off_target(emulator) == []
    figures.record(
        "2 flaky bulk, default retries",
        records=UPDATES + DELETES,
        records_checked=len(plan.intended),
        faults=faults,
        retries=set_summary["retries"] + delete_summary["retries"],
        requests=set_summary["requests"] + delete_summary["requests"],
        deletes_already_done=delete_summary["missing"],
        exhausted=len(exhausted),
        duration_s=watch.seconds,
    )


@pytest.mark.slow
def test_without_retries_every_failure_is_reported_and_nothing_else_is_off_target(
    dag_runner: Any,
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    tmp_path: Path,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator = emulator_factory(users=USERS)
    plan = Plan(emulator, tmp_path)
    conn_id = connect(emulator, "kumulos_no_retries", **FAST_EXTRAS, max_retries=0)
    emulator.set_fault_rates(**FLAKY_RATES, seed=12)

    states, set_summary, delete_summary = _run(
        dag_runner,
        plan.dag("reliability_bulk_no_retries", conn_id, plan.updates_path, plan.deletes_path, "1"),
        "reliability_bulk_no_retries",
    )
    faults = fault_breakdown(emulator)
    emulator.clear_faults()
    assert states == {"set": "failed", "delete": "failed"}, "more failures than max_failures=0 fail the task"
    set_failed, delete_failed = (
        _failed_ids(plan.failures("set", "1")),
        _failed_ids(plan.failures("delete", "1")),
    )
    assert set_summary["retries"] == delete_summary["retries"] == 0
    assert set_summary["total"] == UPDATES and delete_summary["total"] == DELETES
    assert set_summary["succeeded"] + set_summary["failed"] == UPDATES
    assert delete_summary["succeeded"] + delete_summary["missing"] + delete_summary["failed"] == DELETES
    assert (len(set_failed), len(delete_failed)) == (set_summary["failed"], delete_summary["failed"])
    assert len(set(set_failed)) == len(set_failed) and len(set(delete_failed)) == len(delete_failed)
    assert set(set_failed) <= set(plan.updates) and set(delete_failed) <= set(plan.delete_ids)
    # Each injected fault failed its record with the matching typed error. A busy machine may add
    # read timeouts on answers that were merely late (counted, not hidden); nothing else fails.
    reasons = _reasons(plan.failures("set", "1")) + _reasons(plan.failures("delete", "1"))
    assert reasons["KumulosServerError"] == faults["5xx"]
    assert reasons["KumulosRateLimitError"] == faults["429"]
    assert reasons["connection dropped"] == faults["dropped"]
    assert reasons["read timeout"] >= faults["slow"]
    assert sum(reasons.values()) == len(set_failed) + len(delete_failed)
    assert plan.off_target(emulator, skip=set(set_failed) | set(delete_failed)) == []
    # The records nobody reported are exactly right. A reported record may be right too: its answer
    # was lost after the server applied it, or (a delete) there was nothing to clear.
    on_target_anyway = len(set(set_failed + delete_failed) - set(plan.off_target(emulator)))

    _feed_back(dag_runner, plan, connect(emulator, "kumulos_feed_back", **FAST_EXTRAS), "1", "feed-back")
    assert plan.off_target(emulator) == []
    figures.record(
        "2 flaky bulk, retries off",
        records=UPDATES + DELETES,
        records_checked=len(plan.intended),
        faults=faults,
        retries=0,
        failed_reported=len(set_failed) + len(delete_failed),
        timeouts_under_load=reasons["read timeout"] - faults["slow"],
        failed_but_on_target=on_target_anyway,
        duration_s=watch.seconds,
    )


def _feed_back(dag_runner: Any, plan: Plan, conn_id: str, attempt: str, dag_id: str) -> None:
    """Run the failures files of ``attempt`` as the sources of a new run (what the docs advise)."""
    set_failures, delete_failures = plan.failures("set", attempt), plan.failures("delete", attempt)
    dag_id = f"reliability_bulk_{dag_id.replace('-', '_')}"
    source = plan.dag(dag_id, conn_id, set_failures, delete_failures, f"{attempt}-fed-back")
    states, set_summary, delete_summary = _run(dag_runner, source, dag_id)
    assert states == {"set": "success", "delete": "success"}
    assert set_summary["failed"] == delete_summary["failed"] == 0
