"""The non-Airflow services of the deployment test, each on a free loopback port: moto's S3 server,
the Kumulos emulator (``python -m airflow_provider_kumulos.testing.emulator``) and Redis."""

from __future__ import annotations

from pathlib import Path

import httpx
from e2e_procs import DeploymentError, ServiceGroup, base_env, free_port, run_checked, wait_for


def start_moto(services: ServiceGroup, venv_bin: Path) -> str:
    """moto's S3 API (``moto_server``); returns its endpoint URL."""
    port = free_port()
    services.start("moto-s3", [str(venv_bin / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], base_env())
    endpoint = f"http://127.0.0.1:{port}"

    def answering() -> bool | None:
        try:
            httpx.get(endpoint, timeout=2.0, trust_env=False)
        except httpx.HTTPError:
            return None
        return True

    wait_for("moto's S3 server", answering, timeout=60, services=services)
    return endpoint


def start_emulator(
    services: ServiceGroup, venv_bin: Path, run_dir: Path, users: int, api_key: str, server_key: str
) -> str:
    """The Kumulos emulator with ``users`` generated users; returns its base URL from the ready file."""
    ready = run_dir / "emulator.url"
    argv = [str(venv_bin / "python"), "-m", "airflow_provider_kumulos.testing.emulator", "--port", "0"]
    argv += [
        "--users",
        str(users),
        "--api-key",
        api_key,
        "--server-key",
        server_key,
        "--ready-file",
        str(ready),
    ]
    services.start("kumulos-emulator", argv, base_env())
    return wait_for(
        "the Kumulos emulator", lambda: ready.read_text() if ready.exists() else None, 60, services
    ).strip()


def start_redis(services: ServiceGroup, run_dir: Path) -> str:
    """A Redis server without persistence, the Celery broker; returns its URL."""
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
