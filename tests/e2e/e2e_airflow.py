"""An Airflow 3 deployment on loopback: api-server, scheduler, dag-processor, triggerer (+ Celery workers).

All components share one environment (metadata DB on PostgreSQL, JWT secret, execution API URL);
each runs as a separate service with its own log file.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import httpx
from e2e_procs import Service, ServiceGroup, free_port, run_checked, wait_for

USERNAME = "e2e-admin"
CELERY_EXECUTOR = "airflow.providers.celery.executors.celery_executor.CeleryExecutor"
CORE_COMPONENTS = ("scheduler", "triggerer", "dag_processor")
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


class AirflowDeployment:
    """Configure and run the Airflow components of the test against ``db_url``."""

    def __init__(
        self,
        venv_bin: Path,
        run_dir: Path,
        services: ServiceGroup,
        db_url: str,
        dags_folder: Path,
        extra_env: Mapping[str, str],
        parallelism: int = 8,
        extra_dag_folders: Mapping[str, Path] | None = None,
    ) -> None:
        """``dags_folder`` is the ``dags-folder`` bundle; ``extra_dag_folders`` maps more bundle names
        to folders (each a local DAG bundle)."""
        self.venv_bin = venv_bin
        self.services = services
        self.home = run_dir / "airflow-home"
        self.home.mkdir()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(16)
        passwords_file = self.home / "passwords.json"
        passwords_file.write_text(json.dumps({USERNAME: self.password}))
        self.env: dict[str, str] = {
            **extra_env,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(parallelism),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [{"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}}]
                + [
                    {"name": name, "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(folder)}}
                    for name, folder in (extra_dag_folders or {}).items()
                ]
            ),
        }

    def _airflow(self, *args: str) -> list[str]:
        return [str(self.venv_bin / "airflow"), *args]

    def migrate(self) -> None:
        run_checked(self._airflow("db", "migrate"), env=self.env, timeout=600)

    def start(self) -> None:
        """Start every component and wait until the API reports them all healthy."""
        self.services.start("api-server", self._airflow("api-server"), self.env)
        self.services.start("dag-processor", self._airflow("dag-processor"), self.env)
        self.services.start("triggerer", self._airflow("triggerer"), self.env)
        self.services.start("scheduler", self._airflow("scheduler"), self.env)
        wait_for(
            "Airflow components to report healthy",
            lambda: self._healthy(since=None),
            timeout=240,
            services=self.services,
        )

    def stop_component(self, name: str) -> Service:
        """Stop a running component (SIGTERM, as a restart does); returns the stopped service."""
        service = self.services.get(name)
        self.services.stop(service)
        return service

    def start_again(self, stopped: Service, name: str, component: str) -> None:
        """Start a stopped component again under ``name`` (its own log file) and wait until the API
        reports it healthy with a heartbeat from after now."""
        started = datetime.now(timezone.utc)
        self.services.start(name, stopped.argv, stopped.env)
        wait_for(
            f"{name} to report healthy",
            lambda: self._healthy(since=started, component=component),
            timeout=180,
            services=self.services,
        )

    def restart_worker(self, lost: Service) -> None:
        """Start a lost Celery worker again (same name, its own log file) and wait for its ping."""
        self.services.start(f"{lost.name}-again", lost.argv, lost.env)
        wait_for(
            f"Celery worker {lost.name} to answer a ping again",
            lambda: _workers_answering(self.env["AIRFLOW__CELERY__BROKER_URL"], [lost.name]),
            timeout=180,
            services=self.services,
        )

    def _healthy(self, since: datetime | None, component: str = "scheduler") -> bool | None:
        """True once every component is healthy (and ``component`` has beaten after ``since``)."""
        try:
            body = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5.0, trust_env=False).json()
        except (httpx.HTTPError, ValueError):
            return None
        states = [body.get(name, {}).get("status") for name in ("metadatabase", *CORE_COMPONENTS)]
        if not all(state == "healthy" for state in states):
            return None
        beat = body[component].get(f"latest_{component}_heartbeat")
        if since is not None and (beat is None or datetime.fromisoformat(beat) <= since):
            return None
        return True

    def switch_to_celery(self, broker_url: str, workers: int, concurrency: int) -> list[str]:
        """Restart the scheduler with the CeleryExecutor and start ``workers`` Celery workers.

        Each worker reports a distinct host name (``hostname_callable``) so the API shows which
        worker ran which task. Returns those names.
        """
        scheduler = next(service for service in self.services.services if service.name == "scheduler")
        self.services.stop(scheduler)
        switched_at = datetime.now(timezone.utc)
        backend = self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace(
            "postgresql+psycopg2", "db+postgresql"
        )
        self.env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": CELERY_EXECUTOR,
                "AIRFLOW__CELERY__BROKER_URL": broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": backend,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(concurrency),
            }
        )
        names = []
        for index in range(1, workers + 1):
            name = f"celery-worker-{index}"
            env = {
                **self.env,
                "KUMULOS_E2E_WORKER_NAME": name,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "e2e_worker_name.worker_name",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "PYTHONPATH": _prepend_path(str(Path(__file__).parent), self.env.get("PYTHONPATH")),
            }
            self.services.start(
                name,
                self._airflow(
                    "celery", "worker", "--celery-hostname", f"{name}@127.0.0.1", "--without-mingle"
                ),
                env,
            )
            names.append(name)
        self.services.start("scheduler-celery", self._airflow("scheduler"), self.env)
        wait_for(
            "the Celery scheduler to report healthy",
            lambda: self._healthy(since=switched_at),
            timeout=180,
            services=self.services,
        )
        wait_for(
            f"Celery workers {', '.join(names)} to answer a ping",
            lambda: _workers_answering(broker_url, names),
            timeout=180,
            services=self.services,
        )
        return names


def _workers_answering(broker_url: str, names: list[str]) -> bool | None:
    """True once every named worker answers Celery's broadcast ping through the broker."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        replies = app.control.ping(timeout=1.0)
    finally:
        app.close()
    answered = {hostname.partition("@")[0] for reply in replies for hostname in reply}
    return True if set(names) <= answered else None


def _prepend_path(entry: str, current: str | None) -> str:
    return entry if not current else f"{entry}:{current}"


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
