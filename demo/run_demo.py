"""Demo: the ``kumulos_segment_refresh`` example DAG run twice against a 10,000-user Kumulos emulator.

Everything lives under ``.demo/`` and is wiped at the start, so the demo can run any number of
times: a SQLite AIRFLOW_HOME (``airflow db migrate``), a SQLite warehouse file, the emulator as its
own process on loopback, then ``airflow dags test kumulos_segment_refresh`` with the dags folder
pointing at ``example_dags/`` and the outputs (and the sync state) written to ``.demo/output/``.
The first run sends every user; then a few users change in Kumulos and the app overwrites the
attributes of 50 others (as its SDK does), and the second run, reconciling against its export,
sends only those: the overwritten ones are counted as drifted and corrected. The demo ends by
checking, through the emulator's users listing, that every user in Kumulos holds the segments the
warehouse computed. The connections and the output Variable come from the environment, as in a
deployment. Airflow's own output goes to ``.demo/logs/``; the terminal gets what each run sent,
read back from the run's XCom and from the emulator. Run it with ``make demo``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _common import (
    ROOT,
    EmulatorProcess,
    airflow_env,
    emulator_process,
)  # shared helpers, standard library only

from airflow_provider_kumulos.testing.emulator import REFERENCE_DATE

USERS = 10_000
DAG_ID = "kumulos_segment_refresh"
DEMO_DIR = ROOT / ".demo"
LOGS = DEMO_DIR / "logs"
#: The run's logical date: the emulator's users were all last active in the 120 days before it,
#: so ``inactive_30d`` splits them into two real groups whatever day the demo runs.
LOGICAL_DATE = REFERENCE_DATE.date().isoformat()
#: Share of the users the app overwrites between the runs, and what its SDK sends for them.
APP_SHARE = 0.005
APP_ATTRIBUTES = {"appVersion": "3.2.0", "pushOptIn": True}


def airflow(args: list[str], env: dict[str, str], log_name: str) -> float:
    """Run ``airflow <args>`` with its output in ``.demo/logs/<log_name>``; returns the seconds taken."""
    began = time.perf_counter()
    log_path = LOGS / log_name
    with log_path.open("wb") as log:
        status = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
    if status != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"`airflow {' '.join(args)}` exited with {status}; end of {log_path}:\n{tail}")
    return time.perf_counter() - began


def read_run() -> tuple[str, dict[str, str], dict[str, Any] | None]:
    """The demo's DAG run from the metadata database: its state, task states and the report's XCom."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=DAG_ID).order_by(DagRun.id.desc()).first()
        if run is None:
            raise RuntimeError(f"no {DAG_ID} run was recorded")
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id="report", key="return_value")
            .one_or_none()
        )
        report = None if row is None else XComModel.deserialize_value(row)
        return str(run.state), states, report


def change_a_few_users(emulator: EmulatorProcess) -> str:
    """Between the runs: 3 users become active on the web, 2 join, 2 leave. Returns what was done."""
    identifiers = emulator.admin("users")["identifiers"]
    now = f"{LOGICAL_DATE}T00:00:00+00:00"
    for identifier in identifiers[:3]:
        user = emulator.admin(f"users/{identifier}")
        emulator.admin(f"users/{identifier}", "DELETE")
        web = [{"id": f"web-{identifier}", "os": "Web", "lastActive": now}]
        emulator.admin(
            "users",
            "POST",
            {"identifier": identifier, "attributes": user["attributes"], "lastActive": now, "installs": web},
        )
    for number in (1, 2):
        emulator.admin("users", "POST", {"identifier": f"joined-{number}", "lastActive": now, "installs": []})
    for identifier in identifiers[-2:]:
        emulator.admin(f"users/{identifier}", "DELETE")
    return "3 users now active on the web, 2 new users, 2 users deleted"


def app_overwrites(emulator: EmulatorProcess) -> list[str]:
    """Between the runs: the app's SDK associates some users again with its own attributes, replacing
    their whole attribute set (segment keys included), as Kumulos's last-write-wins allows."""
    body = {"share": APP_SHARE, "seed": 7, "attributes": APP_ATTRIBUTES}
    identifiers: list[str] = emulator.admin("associate", "POST", body)["identifiers"]
    return identifiers


def check_kumulos_matches_warehouse(emulator: EmulatorProcess, warehouse: Path, as_of: str) -> str:
    """Every user's segment keys in Kumulos (read through the users listing) against the warehouse's
    segments; raises RuntimeError naming a few that differ."""
    sys.path.insert(0, str(ROOT / "example_dags"))
    from kumulos_segment_refresh import SEGMENTS_SQL

    with contextlib.closing(sqlite3.connect(warehouse)) as db:
        segments = {
            identifier: {"activity": activity, "primary_platform": platform}
            for identifier, activity, platform in db.execute(SEGMENTS_SQL, {"as_of": as_of})
        }
    held = dict(emulator.held_attributes())
    wrong = [
        identifier
        for identifier, wanted in segments.items()
        if {key: (held.get(identifier) or {}).get(key) for key in wanted} != wanted
    ]
    strays = [
        identifier
        for identifier, attributes in held.items()
        if identifier not in segments and {"activity", "primary_platform"} & set(attributes)
    ]
    if wrong or strays or len(held) != len(segments):
        raise RuntimeError(
            f"Kumulos differs from the warehouse: {len(wrong)} users with other segments (e.g. "
            f"{wrong[:3]}), {len(strays)} users outside the warehouse with segment keys, "
            f"{len(held):,} users in Kumulos and {len(segments):,} in the warehouse"
        )
    return f"Kumulos matches the warehouse for all {len(segments):,} users (activity and primary_platform)"


def shown(url: str) -> str:
    """A ``file://`` URL inside the project as a relative path, anything else as it is."""
    path = Path(url.removeprefix("file://"))
    return str(path.relative_to(ROOT)) if url.startswith("file://") and path.is_relative_to(ROOT) else url


def request_counts(emulator: EmulatorProcess) -> dict[str, int]:
    """The emulator's answers so far, per method and status (``GET 200``...)."""
    return dict(emulator.admin("stats")["requests"])


def answered_since(emulator: EmulatorProcess, before: dict[str, int]) -> str:
    """The answers since ``before``, e.g. ``GET 200 x3, PUT 200 x3``."""
    now = request_counts(emulator)
    counts = {name: count - before.get(name, 0) for name, count in sorted(now.items())}
    return ", ".join(f"{name} x{count:,}" for name, count in counts.items() if count) or "none"


def print_run(title: str, report: dict[str, Any], answered: str, seconds: float) -> None:
    """What one run did, in a few lines."""
    platforms = ", ".join(f"{name} {count:,}" for name, count in report["primary_platform"].items())
    failures = f"{report['failures']:,}"
    if report["failures"]:
        failures += f" -> {shown(report['failures_path'])}"
    rows = [
        ("users exported", f"{report['users_exported']:,} -> {shown(report['export_path'])}"),
        ("segments (SQL)", f"inactive_30d {report['inactive_30d']:,}; primary_platform {platforms}"),
        (
            "sent",
            f"{report['sent']:,} users whose segments Kumulos lacked (merged into their attributes)",
        ),
        ("unchanged", f"{report['unchanged']:,} users already holding theirs (per the export): no request"),
        (
            "drifted",
            f"{report['drifted']:,} of those sent held other segments than the last sync had sent "
            "(overwritten in Kumulos since): corrected",
        ),
        ("removed", f"{report['removed']:,} users absent from the warehouse lost the segment keys"),
        ("failures", failures),
        ("requests", f"{report['requests']:,} by the push; the emulator answered {answered} in all"),
        ("time", f"DAG run {seconds:.0f}s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{title}\n")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")


def run_once(
    env: dict[str, str], emulator: EmulatorProcess, log_name: str
) -> tuple[dict[str, Any], str, float]:
    """``airflow dags test`` of the example; its report, the requests answered and the seconds it took."""
    before = request_counts(emulator)
    seconds = airflow(["dags", "test", DAG_ID, LOGICAL_DATE], env, log_name)
    os.environ.update(env)
    state, states, report = read_run()
    if state != "success" or report is None:
        raise RuntimeError(f"{DAG_ID} ended {state}: {states}; see {LOGS / log_name}")
    return report, answered_since(emulator, before), seconds


def main() -> int:
    """Run the demo; exit status 1 when a DAG run did not succeed."""
    began = time.perf_counter()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    LOGS.mkdir(parents=True)
    env = airflow_env(DEMO_DIR / "airflow-home")
    warehouse = DEMO_DIR / "warehouse.db"
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW_VAR_KUMULOS_OUTPUT_BASE=f"file://{DEMO_DIR / 'output'}",
        AIRFLOW_CONN_KUMULOS_WAREHOUSE=json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
    )
    try:
        print(f"Preparing Airflow in {shown('file://' + str(DEMO_DIR))}/ (SQLite, airflow db migrate)...")
        migrate = airflow(["db", "migrate"], env, "db-migrate.log")
        print(f"Starting the Kumulos CRM emulator with {USERS:,} users on loopback...")
        with emulator_process(USERS, DEMO_DIR, env=env) as emulator:
            env["AIRFLOW_CONN_KUMULOS_DEFAULT"] = emulator.connection_json()
            print(f"Run 1: {DAG_ID} for {LOGICAL_DATE} against {emulator.base_url} (airflow dags test)...")
            print_run(
                "Run 1 (no sync state yet: every user is sent)", *run_once(env, emulator, "dags-test-1.log")
            )
            changes = change_a_few_users(emulator)
            overwritten = app_overwrites(emulator)
            print(
                f"\nIn Kumulos meanwhile: {changes}; and the app overwrote the attributes of "
                f"{len(overwritten)} users (its SDK's associateUserWithInstall() replaces them: segment "
                "keys gone). Run 2, same DAG..."
            )
            report, answered, seconds = run_once(env, emulator, "dags-test-2.log")
            print_run(
                "Run 2 (only the changes and the overwritten users are sent)", report, answered, seconds
            )
            print(
                f"\nChecked through the emulator: {check_kumulos_matches_warehouse(emulator, warehouse, report['as_of'])}"
            )
    except RuntimeError as error:
        print(f"\nThe demo failed: {error}", file=sys.stderr)
        return 1
    state_file = DEMO_DIR / "output" / "segments" / "sync_state.sqlite"
    print(
        f"\nSync state: {shown('file://' + str(state_file))} ({state_file.stat().st_size / 1e6:.1f} MB); "
        f"warehouse: {shown('file://' + str(warehouse))}; Airflow's logs: {shown('file://' + str(LOGS))}/"
    )
    print(f"Total {time.perf_counter() - began:.0f}s (db migrate {migrate:.0f}s). Emulator stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
