"""Run the example DAGs on a real Airflow 3 deployment on loopback and check what users would see.

Starts PostgreSQL (metadata DB), moto's S3 server, the Kumulos emulator, and Airflow's api-server,
scheduler (LocalExecutor), dag-processor and triggerer as separate processes; triggers the DAGs
through the authenticated REST API and checks the results; runs 100 deferred sensors through the
triggerer at once (``e2e_sensors``); checks the UI in Chromium (``e2e_browser``); optionally
repeats the parallel export on the CeleryExecutor with two workers (Redis broker) and then injects
production faults (``e2e_chaos``); finally scans every log for the server key and the users'
attribute values (``e2e_leaks``). Everything is stopped at the end, however the run ends. Not
collected by pytest: run it as

    .venv-e2e/bin/python tests/e2e/run_deployment.py [--celery] [--chaos 0|1|only] [--browser 0|1]
        [--users N] [--run-dir DIR]

(``.ci/e2e.sh`` builds ``.venv-e2e`` and calls this).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from e2e_airflow import USERNAME, AirflowDeployment
from e2e_browser import BrowserPhase, TaskPage
from e2e_chaos import AIRFLOW_SETTINGS, SCENARIOS, Chaos, run_all
from e2e_checks import Checks, Figures
from e2e_emulator import EmulatorAdmin
from e2e_leaks import personal_values, scan_logs
from e2e_postgres import PostgresCluster
from e2e_procs import DeploymentError, ServiceGroup, base_env, wait_for
from e2e_rest import AirflowAPI
from e2e_sensors import sensor_burst
from e2e_services import start_emulator, start_moto, start_redis
from e2e_storage import ObjectReader
from e2e_warehouse import WarehouseSync

REPO = Path(__file__).resolve().parents[2]
DAG_IDS = (
    "kumulos_export_users",
    "kumulos_segment_refresh",
    "kumulos_onboarding",
    "kumulos_parallel_export",
    "kumulos_e2e_sensor_burst",
    "kumulos_e2e_export_resume",
    "kumulos_e2e_export_outage",
    "kumulos_e2e_bulk_worker_lost",
    "kumulos_e2e_bulk_worker_lost_sync",
    "kumulos_e2e_warehouse",
)
BUCKET = "kumulos-e2e"
API_KEY = "e2e-api-key"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500, help="users the emulator serves (default 500)")
    parser.add_argument("--celery", action="store_true", help="repeat the parallel export on CeleryExecutor")
    parser.add_argument(
        "--chaos",
        choices=("0", "1", "only"),
        default="1",
        help="fault scenarios after the regular checks (needs --celery); 'only' skips the regular checks",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated fault scenarios to run, of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--browser",
        choices=("0", "1"),
        default="1",
        help="check Airflow's UI in Chromium after the regular checks (default 1)",
    )
    parser.add_argument(
        "--run-dir", type=Path, help="scratch directory (logs stay here); default: a new temp dir"
    )
    return parser.parse_args()


def _scenarios(text: str) -> list[str]:
    """The ``--scenarios`` list, each checked against the known scenarios."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise DeploymentError(f"unknown fault scenarios {unknown}: choose among {', '.join(SCENARIOS)}")
    return names


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM (the time limit of ``.ci/e2e.sh``), SIGINT and SIGHUP into a failure with clean-up.

    Later signals are ignored so that they cannot cut the clean-up short.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise DeploymentError(f"interrupted by {signal.Signals(signum).name} (time limit or Ctrl-C)")


class Stopwatch:
    """Times named phases into the run's figures."""

    def __init__(self, figures: Figures) -> None:
        self.figures = figures
        self.started = time.monotonic()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        begin = time.monotonic()
        print(f"[e2e] {name} ...", flush=True)
        yield
        seconds = time.monotonic() - begin
        self.figures.add(f"phase: {name}", f"{seconds:.1f}s")
        print(f"[e2e] {name} done in {seconds:.1f}s", flush=True)


def _provider_env(emulator_url: str, server_key: str, s3_endpoint: str, run_dir: Path) -> dict[str, str]:
    """Connections and the Variable the example DAGs use, as environment variables."""
    kumulos = {"conn_type": "kumulos", "host": emulator_url, "login": API_KEY, "password": server_key}
    aws = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    return {
        **base_env(),
        "AIRFLOW_CONN_KUMULOS_DEFAULT": json.dumps({**kumulos, "extra": {"max_retries": 3}}),
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "AIRFLOW_CONN_KUMULOS_WAREHOUSE": json.dumps(
            {"conn_type": "sqlite", "host": str(run_dir / "warehouse.db")}
        ),
        "AIRFLOW_VAR_KUMULOS_OUTPUT_BASE": f"s3://aws_default@{BUCKET}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # Everything here is on loopback: never through a proxy the machine may have configured.
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _wait_for_dags(api: AirflowAPI, services: ServiceGroup) -> None:
    """Every checked DAG parsed and serialised; an import error fails at once with its text."""

    def parsed() -> bool | None:
        errors = api.import_errors()
        if errors:
            raise DeploymentError("DAG import errors:\n" + "\n".join(e["stack_trace"] for e in errors))
        return True if all(api.dag(dag_id) is not None for dag_id in DAG_IDS) else None

    wait_for(f"the DAGs {', '.join(DAG_IDS)} to be parsed", parsed, timeout=180, services=services)


def _check_authentication(api: AirflowAPI) -> None:
    """The API refuses anonymous calls and wrong passwords before we log in for real."""
    status = api.anonymous_status("/api/v2/dags")
    if status != 401:
        raise DeploymentError(f"anonymous GET /api/v2/dags answered {status}, expected 401")
    if not api.login_rejected("not-the-password"):
        raise DeploymentError("/auth/token accepted a wrong password")
    api.login()


def _personal_values(emulator: EmulatorAdmin, server_key: str) -> set[str]:
    """The names and e-mails of every user the emulator holds now, and of those the test created
    (whose attributes a DAG may have deleted since)."""
    held = emulator.attributes_by_user(API_KEY, server_key).values()
    return emulator.given.union(*(personal_values(attributes) for attributes in held))


def _check_ui(
    api: AirflowAPI, deployment: AirflowDeployment, checks: Checks, forbidden: set[str], log_dir: Path
) -> str | None:
    """The browser phase on the latest export and onboarding runs; returns its failures, if any."""
    from airflow_provider_kumulos import get_provider_info

    info = get_provider_info()
    connection_type = next(item for item in info["connection-types"] if item["connection-type"] == "kumulos")
    export = checks.latest["kumulos_export_users"].run_id
    summary = api.xcom("kumulos_export_users", export, "export_users")
    onboarding = checks.latest["kumulos_onboarding"].run_id
    user_id = str(api.run_conf("kumulos_onboarding", onboarding)["user_id"])
    tasks = [
        TaskPage(
            "kumulos_export_users",
            export,
            "export_users",
            {"kumulos_conn_id": "kumulos_default", "output_path": summary["path"]},
            ("Kumulos export finished: users written",),
        ),
        TaskPage("kumulos_onboarding", onboarding, "wait_for_user", {"user_id": user_id}, (user_id,)),
    ]
    phase = BrowserPhase(deployment.base_url, USERNAME, deployment.password, log_dir / "browser", forbidden)
    return phase.run(connection_type, info["integrations"][0]["external-doc-url"], tasks, checks.figures)


def _scenario(args: argparse.Namespace, run_dir: Path, services: ServiceGroup, figures: Figures) -> None:
    clock = Stopwatch(figures)
    chaos = args.chaos != "0"
    if chaos and not args.celery:
        raise DeploymentError("the fault scenarios need the CeleryExecutor part: add --celery, or --chaos 0")
    venv_bin = Path(sys.executable).parent
    server_key = secrets.token_urlsafe(24)
    postgres = PostgresCluster(run_dir, services.log_dir)
    try:
        with clock.phase("start PostgreSQL, moto S3, Kumulos emulator"):
            postgres.start()
            s3_endpoint = start_moto(services, venv_bin)
            emulator_url = start_emulator(services, venv_bin, run_dir, args.users, API_KEY, server_key)
            reader = ObjectReader(s3_endpoint)
            reader.s3.create_bucket(Bucket=BUCKET)
        env = _provider_env(emulator_url, server_key, s3_endpoint, run_dir)
        if chaos:
            env.update(AIRFLOW_SETTINGS)
        deployment = AirflowDeployment(
            venv_bin,
            run_dir,
            services,
            postgres.sqlalchemy_url,
            REPO / "example_dags",
            env,
            extra_dag_folders={"e2e-dags": Path(__file__).parent / "dags"},
        )
        with clock.phase("airflow db migrate"):
            deployment.migrate()
        with clock.phase("start Airflow components"):
            deployment.start()
        api = AirflowAPI(deployment.base_url, USERNAME, deployment.password)
        emulator = EmulatorAdmin(emulator_url)
        try:
            _check_authentication(api)
            with clock.phase("parse DAGs"):
                _wait_for_dags(api, services)
            checks = Checks(api, emulator, reader, figures, services.check_alive)
            regular = args.chaos != "only"
            blocked = ui_failures = None
            if regular:
                with clock.phase("kumulos_export_users"):
                    checks.export_users()
                with clock.phase("kumulos_parallel_export (LocalExecutor)"):
                    checks.parallel_export("parallel export (LocalExecutor)")
                with clock.phase("kumulos_onboarding"):
                    checks.onboarding()
                with clock.phase("kumulos_segment_refresh"):
                    checks.segment_refresh()
                with clock.phase("kumulos_e2e_warehouse (Postgres, change-only sync)"):
                    WarehouseSync(checks, postgres).run()
                if args.browser == "1":
                    with clock.phase("browser: Airflow's UI in Chromium"):
                        forbidden = _personal_values(emulator, server_key) | {server_key}
                        ui_failures = _check_ui(api, deployment, checks, forbidden, services.log_dir)
                with clock.phase("100 deferred sensors in the triggerer"):
                    blocked = sensor_burst(
                        api, emulator, services, services.log_dir / "triggerer.log", figures
                    )
            if args.celery:
                with clock.phase("switch to CeleryExecutor"):
                    workers = deployment.switch_to_celery(
                        start_redis(services, run_dir), workers=2, concurrency=2
                    )
                if regular:
                    with clock.phase("kumulos_parallel_export (CeleryExecutor)"):
                        checks.parallel_export("parallel export (CeleryExecutor)", workers=set(workers))
            if chaos:
                run_all(
                    Chaos(checks, deployment, postgres, services, BUCKET, (API_KEY, server_key)),
                    clock.phase,
                    _scenarios(args.scenarios),
                )
            with clock.phase("scan the logs for the server key and attribute values"):
                personal = _personal_values(emulator, server_key)
                leaks = scan_logs(server_key, personal, deployment.home / "logs", services.log_dir)
            if not leaks:
                figures.add(
                    "log scan", f"no server key, none of {len(personal)} names and e-mails in any log"
                )
            failures = [failure for failure in (blocked, ui_failures, leaks) if failure]
            if failures:
                raise DeploymentError("; ".join(failures))
        finally:
            api.close()
            emulator.close()
        figures.add("total", f"{time.monotonic() - clock.started:.1f}s")
    finally:
        services.stop_all()
        postgres.stop()


def main() -> int:
    """Run the scenario; print the figures, or the failure and each service's log tail."""
    args = _parse_args()
    # All traffic is on loopback: keep boto3 and Celery clients away from any configured proxy.
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="kumulos-e2e-"))
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    services = ServiceGroup(log_dir, run_dir / "pgids")
    figures = Figures()
    try:
        _scenario(args, run_dir, services, figures)
    except BaseException as exc:
        print(services.tails(), file=sys.stderr)
        traceback.print_exc()
        figures.add("CPU time", _cpu_time())
        print(f"[e2e] figures so far:\n{figures.render()}", flush=True)
        print(f"[e2e] FAILED: {exc}\n[e2e] logs: {log_dir}", file=sys.stderr, flush=True)
        return 1
    figures.add("CPU time", _cpu_time())
    print(f"[e2e] deployment test passed (logs: {log_dir})\n{figures.render()}", flush=True)
    return 0


def _cpu_time() -> str:
    """CPU seconds used by this driver and every process it started and reaped (PostgreSQL, which
    detaches, excluded): on an idle machine the run cannot take less than this over the cores."""
    used = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    cores = os.cpu_count() or 1
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{used:.0f}s user+system, i.e. at least {used / cores:.0f}s on {cores} idle cores (load average {load})"


if __name__ == "__main__":
    sys.exit(main())
