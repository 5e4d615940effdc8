"""Demo: the ``kumulos_segment_refresh`` example DAG end to end against a 10,000-user Kumulos emulator.

Everything lives under ``.demo/`` and is wiped at the start, so the demo can run any number of
times: a SQLite AIRFLOW_HOME (``airflow db migrate``), the emulator as its own process on loopback,
then ``airflow dags test kumulos_segment_refresh`` with the dags folder pointing at ``example_dags/``
and the outputs written to ``.demo/output/``. The connection and the output Variable come from the
environment, as in a deployment. Airflow's own output goes to ``.demo/logs/``; the terminal gets a
short summary read back from the run's XCom and from the emulator. Run it with ``make demo``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _common import ROOT, airflow_env, emulator_process  # shared helpers, standard library only

from airflow_provider_kumulos.testing.emulator import REFERENCE_DATE

USERS = 10_000
DAG_ID = "kumulos_segment_refresh"
DEMO_DIR = ROOT / ".demo"
LOGS = DEMO_DIR / "logs"
#: The run's logical date: the emulator's users were all last active in the 120 days before it,
#: so ``inactive_30d`` splits them into two real groups whatever day the demo runs.
LOGICAL_DATE = REFERENCE_DATE.date().isoformat()


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


def admin(base_url: str, route: str) -> Any:
    """GET one route of the emulator's ``/_emulator/`` admin API."""
    with urllib.request.urlopen(f"{base_url}/_emulator/{route}", timeout=10) as response:
        return json.load(response)


def shown(url: str) -> str:
    """A ``file://`` URL inside the project as a relative path, anything else as it is."""
    path = Path(url.removeprefix("file://"))
    return str(path.relative_to(ROOT)) if url.startswith("file://") and path.is_relative_to(ROOT) else url


def print_summary(report: dict[str, Any], base_url: str, seconds: dict[str, float]) -> None:
    """What a person wants to know after the run, in a dozen lines."""
    export_path = Path(report["export_path"].removeprefix("file://"))
    size = f" ({export_path.stat().st_size / 1e6:.1f} MB)" if export_path.exists() else ""
    platforms = ", ".join(f"{name} {count:,}" for name, count in report["primary_platform"].items())
    sample_id = admin(base_url, "users")["identifiers"][0]
    sample = admin(base_url, f"users/{sample_id}")["attributes"]
    segment = {key: sample.get(key) for key in ("inactive_30d", "primary_platform")}
    stats = admin(base_url, "stats")
    answered = ", ".join(f"{name} x{count:,}" for name, count in sorted(stats["requests"].items()))
    failures = f"{report['failures']:,}"
    if report["failures"]:
        failures += f" -> {shown(report['failures_path'])}"
    as_of = report["as_of"][:10]
    rows = [
        ("users exported", f"{report['users_exported']:,} -> {shown(report['export_path'])}{size}"),
        ("inactive_30d", f"{report['inactive_30d']:,} users (not active in the 30 days to {as_of})"),
        ("primary_platform", platforms),
        ("segment file", f"{report['users_to_update']:,} users to update -> {shown(report['segment_path'])}"),
        ("attributes set", f"{report['attributes_set']:,} users (merged into their existing attributes)"),
        ("failures", failures),
        ("in Kumulos now", f"{sample_id}: {segment}, plus {len(sample) - len(segment)} attributes it had"),
        ("requests answered", f"{answered} (emulator on {base_url})"),
        ("time", ", ".join(f"{name} {value:.0f}s" for name, value in seconds.items())),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{DAG_ID} finished: success\n")
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    print(f"\nAirflow's logs: {shown('file://' + str(LOGS))}/")


def main() -> int:
    """Run the demo; exit status 1 when the DAG run did not succeed."""
    began = time.perf_counter()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    LOGS.mkdir(parents=True)
    env = airflow_env(DEMO_DIR / "airflow-home")
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
        AIRFLOW_VAR_KUMULOS_OUTPUT_BASE=f"file://{DEMO_DIR / 'output'}",
    )
    seconds: dict[str, float] = {}
    try:
        print(f"Preparing Airflow in {shown('file://' + str(DEMO_DIR))}/ (SQLite, airflow db migrate)...")
        seconds["db migrate"] = airflow(["db", "migrate"], env, "db-migrate.log")
        print(f"Starting the Kumulos CRM emulator with {USERS:,} users on loopback...")
        with emulator_process(USERS, DEMO_DIR, env=env) as emulator:
            env["AIRFLOW_CONN_KUMULOS_DEFAULT"] = emulator.connection_json()
            print(f"Running {DAG_ID} for {LOGICAL_DATE} against {emulator.base_url} (airflow dags test)...")
            seconds["DAG run"] = airflow(["dags", "test", DAG_ID, LOGICAL_DATE], env, "dags-test.log")
            os.environ.update(env)
            state, states, report = read_run()
            if state != "success" or report is None:
                raise RuntimeError(f"{DAG_ID} ended {state}: {states}; see {LOGS / 'dags-test.log'}")
            seconds["total"] = time.perf_counter() - began
            print_summary(report, emulator.base_url, seconds)
    except RuntimeError as error:
        print(f"\nThe demo failed: {error}", file=sys.stderr)
        return 1
    print("Emulator stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
