"""Test session set-up: a throwaway AIRFLOW_HOME (SQLite, its own dags folder) and a DAG runner.

The environment is set before anything imports Airflow, so no test ever touches a real deployment.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="kumulos-airflow-home-"))
(_HOME / "dags").mkdir()
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.pop("AIRFLOW_CONN_KUMULOS_DEFAULT", None)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's AIRFLOW_HOME, with its metadata database migrated (done once, on demand)."""
    marker = _HOME / ".migrated"
    if not marker.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
        )
        marker.touch()
    return _HOME


class DagRunner:
    """Write a DAG file into the dags folder (the configured bundle) and run it with ``dag.test()``."""

    def __init__(self, home: Path) -> None:
        self.dags_folder = home / "dags"

    def write(self, source: str, name: str | None = None) -> Path:
        path = self.dags_folder / f"{name or 'dag_' + uuid.uuid4().hex[:10]}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def load(self, path: Path, dag_id: str) -> Any:
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:  # Airflow < 3.2
            from airflow.models.dagbag import DagBag

        bag = DagBag(str(path))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    def run(self, source_or_path: str | Path, dag_id: str, **test_kwargs: Any) -> Any:
        path = source_or_path if isinstance(source_or_path, Path) else self.write(source_or_path)
        dag = self.load(path, dag_id)
        if _airflow_before_3_2():
            _serialize_for_old_airflow(dag)
            _complete_old_dag_test()
        return dag.test(**test_kwargs)

    @staticmethod
    def states(dag_run: Any) -> dict[str, str]:
        """``task_id[map_index] -> state`` for every task instance of the run."""
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
            for ti in dag_run.get_task_instances()
        }

    @staticmethod
    def xcom(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The XCom value a task pushed in ``dag_run``."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(
                    dag_id=dag_run.dag_id,
                    run_id=dag_run.run_id,
                    task_id=task_id,
                    key=key,
                    map_index=map_index,
                )
                .one_or_none()
            )
            if row is None:
                return None
            return XComModel.deserialize_value(row)


def _airflow_before_3_2() -> bool:
    from airflow import __version__
    from packaging.version import Version

    return Version(__version__) < Version("3.2")


def _serialize_for_old_airflow(dag: Any) -> None:
    """Airflow 3.1's ``dag.test()`` needs the DAG serialised in the DB first (3.2+ does it itself)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag.fileloc)
    sync_bag_to_db(bag, "dags-folder", None)


def _complete_old_dag_test() -> None:
    """Make Airflow 3.1's ``dag.test()`` run tasks as its workers do (3.2+ needs none of this).

    Its in-process runner skips two things a worker does: it puts no ``exception`` in the failure
    callbacks' context (a worker's task runner does), and it starts a new execution API, with an
    event-loop thread that is never stopped, for every task, which makes a long session hang; 3.2+
    keeps one per process, as this does.
    """
    from airflow.sdk.execution_time import supervisor, task_runner

    if not hasattr(supervisor.in_process_api_server, "cache_clear"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)
    finalize = task_runner.finalize
    if getattr(finalize, "sets_exception", False):
        return

    @functools.wraps(finalize)
    def finalize_with_exception(
        ti: Any, state: Any, context: Any, log: Any, error: BaseException | None = None
    ) -> Any:
        context["exception"] = error
        return finalize(ti, state, context, log, error)

    finalize_with_exception.sets_exception = True  # type: ignore[attr-defined]
    task_runner.finalize = finalize_with_exception


@pytest.fixture
def dag_runner(airflow_home: Path) -> Iterator[DagRunner]:
    """Run DAG files for real (``dag.test()``) in the session's AIRFLOW_HOME."""
    yield DagRunner(airflow_home)


@pytest.fixture
def make_hook(kumulos_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Build a ``KumulosCRMHook`` pointed at the test's emulator, with fast retries by default."""
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

    def make(conn_id: str = "kumulos_test", **kwargs: Any) -> KumulosCRMHook:
        extra = kwargs.pop("extra", {})
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", kumulos_emulator.connection_uri(**extra))
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("backoff_max", 0.05)
        return KumulosCRMHook(conn_id, **kwargs)

    return make


@pytest.fixture(scope="session")
def moto_s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's server mode) on a free loopback port, for object-storage paths."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on moto's server, reachable as ``s3://aws_default@<bucket>/...``."""
    import json

    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": moto_s3_endpoint, "region_name": "us-east-1"},
            }
        ),
    )
    bucket = f"kumulos-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_client(moto_s3_endpoint: str) -> Any:
    """A boto3 S3 client on moto's server, for reading back what tests wrote."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
