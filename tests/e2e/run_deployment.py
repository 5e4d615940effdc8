"""Run the example DAGs on a real Airflow 3 deployment on loopback and check what users would see.

Starts PostgreSQL (metadata DB), moto's S3 server, the Kumulos emulator, and Airflow's api-server,
scheduler (LocalExecutor), dag-processor and triggerer as separate processes; triggers the DAGs
through the authenticated REST API and checks the results; optionally repeats the parallel export
on the CeleryExecutor with two workers (Redis broker). Everything is stopped at the end, however the
run ends. Not collected by pytest: run it as

    .venv-e2e/bin/python tests/e2e/run_deployment.py [--celery] [--users N] [--run-dir DIR]

(``.ci/e2e.sh`` builds ``.venv-e2e`` and calls this).
"""

from __future__ import annotations

import argparse
import json
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
from typing import Any

import httpx
from e2e_airflow import USERNAME, AirflowDeployment
from e2e_checks import Checks, Figures
from e2e_emulator import EmulatorAdmin
from e2e_postgres import PostgresCluster
from e2e_procs import DeploymentError, ServiceGroup, base_env, free_port, run_checked, wait_for
from e2e_rest import AirflowAPI
from e2e_storage import ObjectReader

REPO = Path(__file__).resolve().parents[2]
STAND_INS = Path(__file__).resolve().parent / "dags"
DAG_IDS = ("kumulos_export_users", "kumulos_segment_refresh", "kumulos_onboarding", "kumulos_parallel_export")
BUCKET = "kumulos-e2e"
API_KEY = "e2e-api-key"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=500, help="users the emulator serves (default 500)")
    parser.add_argument("--celery", action="store_true", help="repeat the parallel export on CeleryExecutor")
    parser.add_argument(
        "--run-dir", type=Path, help="scratch directory (logs stay here); default: a new temp dir"
    )
    parser.add_argument(
        "--dags",
        choices=("auto", "examples", "stand-ins"),
        default="auto",
        help="example_dags/ (auto: when it defines all checked DAG ids) or the stand-ins in tests/e2e/dags",
    )
    return parser.parse_args()


def _choose_dags_folder(choice: str) -> Path:
    examples = REPO / "example_dags"
    if choice == "auto":
        sources = "".join(path.read_text() for path in examples.glob("*.py")) if examples.is_dir() else ""
        choice = "examples" if all(f'"{dag_id}"' in sources for dag_id in DAG_IDS) else "stand-ins"
    return examples if choice == "examples" else STAND_INS


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


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


def _start_moto(services: ServiceGroup, venv_bin: Path) -> str:
    port = free_port()
    services.start("moto-s3", [str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], base_env())
    endpoint = f"http://127.0.0.1:{port}"

    def answering() -> bool | None:
        try:
            httpx.get(endpoint, timeout=2.0)
        except httpx.HTTPError:
            return None
        return True

    wait_for("moto's S3 server", answering, timeout=60, services=services)
    return endpoint


def _start_emulator(
    services: ServiceGroup, venv_bin: Path, run_dir: Path, users: int, server_key: str
) -> str:
    ready = run_dir / "emulator.url"
    argv = [str(venv_bin / "python"), "-m", "airflow_provider_kumulos.testing.emulator", "--port", "0"]
    argv += [
        "--users",
        str(users),
        "--api-key",
        API_KEY,
        "--server-key",
        server_key,
        "--ready-file",
        str(ready),
    ]
    services.start("kumulos-emulator", argv, base_env())
    return wait_for(
        "the Kumulos emulator", lambda: ready.read_text() if ready.exists() else None, 60, services
    ).strip()


def _start_redis(services: ServiceGroup, run_dir: Path) -> str:
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    services.start("redis", [*argv, "--dir", str(run_dir)], base_env())
    wait_for("Redis", lambda: True if "PONG" in _redis_ping(port) else None, timeout=30, services=services)
    return f"redis://127.0.0.1:{port}/0"


def _redis_ping(port: int) -> str:
    try:
        return run_checked(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"], timeout=10)
    except DeploymentError:
        return ""


def _provider_env(emulator_url: str, server_key: str, s3_endpoint: str) -> dict[str, str]:
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
        "AIRFLOW_VAR_KUMULOS_OUTPUT_BASE": f"s3://aws_default@{BUCKET}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost",
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


def _scan_for_secret(secret: str, *folders: Path) -> None:
    """The server key must not appear in any log the deployment wrote."""
    leaks = [
        str(path)
        for folder in folders
        for path in folder.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    if leaks:
        raise DeploymentError(f"the server key appears in {len(leaks)} log files, e.g. {leaks[:3]}")


def _standin_segment(user: dict[str, Any]) -> dict[str, Any]:
    """What the stand-in segment refresh computes for ``user``."""
    installs = user.get("installs") or [{}]
    return {"segment": str(installs[0].get("os", "none")).lower()}


def _scenario(args: argparse.Namespace, run_dir: Path, services: ServiceGroup, figures: Figures) -> None:
    clock = Stopwatch(figures)
    venv_bin = Path(sys.executable).parent
    dags_folder = _choose_dags_folder(args.dags)
    figures.add("DAGs", str(dags_folder.relative_to(REPO)))
    server_key = secrets.token_urlsafe(24)
    postgres = PostgresCluster(run_dir, services.log_dir)
    try:
        with clock.phase("start PostgreSQL, moto S3, Kumulos emulator"):
            postgres.start()
            s3_endpoint = _start_moto(services, venv_bin)
            emulator_url = _start_emulator(services, venv_bin, run_dir, args.users, server_key)
            reader = ObjectReader(s3_endpoint)
            reader.s3.create_bucket(Bucket=BUCKET)
        env = _provider_env(emulator_url, server_key, s3_endpoint)
        if dags_folder == STAND_INS:
            env["PYTHONPATH"] = str(STAND_INS)
        deployment = AirflowDeployment(venv_bin, run_dir, services, postgres.sqlalchemy_url, dags_folder, env)
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
                for dag_id in DAG_IDS:
                    api.unpause(dag_id)
            checks = Checks(api, emulator, reader, figures, services.check_alive)
            with clock.phase("kumulos_export_users"):
                checks.export_users()
            with clock.phase("kumulos_parallel_export (LocalExecutor)"):
                checks.parallel_export("parallel export (LocalExecutor)")
            with clock.phase("kumulos_onboarding"):
                checks.onboarding()
            with clock.phase("kumulos_segment_refresh"):
                checks.segment_refresh(_standin_segment)
            if args.celery:
                with clock.phase("switch to CeleryExecutor"):
                    workers = deployment.switch_to_celery(
                        _start_redis(services, run_dir), workers=2, concurrency=2
                    )
                with clock.phase("kumulos_parallel_export (CeleryExecutor)"):
                    checks.parallel_export("parallel export (CeleryExecutor)", workers=set(workers))
            _scan_for_secret(server_key, deployment.home / "logs", services.log_dir)
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
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
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
        print(f"[e2e] FAILED: {exc}\n[e2e] logs: {log_dir}", file=sys.stderr, flush=True)
        return 1
    print(f"[e2e] deployment test passed (logs: {log_dir})\n{figures.render()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
