"""Metrics reach a real StatsD listener through Airflow's own Stats, with the documented names and counts.

Airflow configures its Stats backend once per process from ``[metrics]``, so each test runs Airflow
in a subprocess whose environment turns StatsD on and points it at a UDP socket this test reads.
The DAG run exports users through scripted 503 and 429 answers, sets attributes with scripted
rejections, deletes attributes of present and missing users, syncs with a state and, after an app
overwrite, reconciles; the counters must agree with what the emulator answered and what the tasks
wrote.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

pytest.importorskip("statsd", reason="Airflow's StatsD backend needs the statsd package")

DOCS = Path(__file__).resolve().parent.parent / "docs" / "observability.md"
PREFIX = "airflow"


class StatsdListener:
    """A UDP socket on loopback that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(line for line in data.decode().splitlines() if line)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()

    def env(self, **metrics: str) -> dict[str, str]:
        """Environment for an Airflow process that sends its metrics here."""
        settings = {"STATSD_ON": "True", "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(self.port)}
        settings.update(STATSD_PREFIX=PREFIX, **metrics)
        return {**os.environ, **{f"AIRFLOW__METRICS__{key}": value for key, value in settings.items()}}

    def counters(self) -> Counter[str]:
        """Counter totals by name (the ``airflow.`` prefix removed), kumulos metrics only."""
        totals: Counter[str] = Counter()
        for name, value, kind in self._parsed():
            if kind == "c":
                totals[name] += int(float(value))
        return totals

    def timers(self) -> dict[str, list[float]]:
        """Timer samples in milliseconds by name, kumulos metrics only."""
        samples: dict[str, list[float]] = {}
        for name, value, kind in self._parsed():
            if kind == "ms":
                samples.setdefault(name, []).append(float(value))
        return samples

    def names(self) -> list[str]:
        """Every kumulos metric name received, sorted."""
        return sorted(name for name, _, _ in self._parsed())

    def _parsed(self) -> Iterator[tuple[str, str, str]]:
        for line in self.lines:
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if name.startswith(f"{PREFIX}.kumulos."):
                yield name.removeprefix(f"{PREFIX}."), value, kind.split("|")[0]


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


def _task_states(dag_id: str) -> dict[str, str]:
    """Task states of the latest run of ``dag_id`` in the session's metadata database."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id).order_by(DagRun.id.desc()).first()
        assert run is not None, f"{dag_id} never ran"
        return {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}


def _documented_metrics() -> set[str]:
    """Metric names in the table of docs/observability.md."""
    return set(re.findall(r"^\| `(kumulos\.[a-z_]+)` \|", DOCS.read_text(), flags=re.MULTILINE))


DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_kumulos.operators.attributes import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.operators.export import ExportUsersOperator

FAST = {{"backoff_base": 0.01, "backoff_max": 0.05, "max_retry_after": 0.05}}

with DAG("observability_metrics", schedule=None, start_date=pendulum.datetime(2026, 1, 1)):
    export = ExportUsersOperator(task_id="export", output_path={out!r}, page_size=10, hook_params=FAST)
    update = SetAttributesOperator(
        task_id="set",
        records=[{{"identifier": f"m-{{n}}", "attributes": {{"n": n}}}} for n in range(20)],
        max_failures=5,
    )
    delete = DeleteAttributesOperator(task_id="delete", user_ids={delete_ids!r})
    first_sync = SetAttributesOperator(
        task_id="first_sync",
        records=[{{"identifier": f"s-{{n}}", "attributes": {{"n": n}}}} for n in range(3)],
        sync_state_path={state!r},
    )
    second_sync = SetAttributesOperator(
        task_id="second_sync",
        records=[{{"identifier": f"s-{{n}}", "attributes": {{"n": n}}}} for n in range(2)],
        sync_state_path={state!r},
        remove_absent=True,
    )
    app = SetAttributesOperator(task_id="app", user_id="s-0", attributes={{"fromTheApp": True}})
    reconciled = SetAttributesOperator(
        task_id="reconciled",
        records=[{{"identifier": f"s-{{n}}", "attributes": {{"n": n}}}} for n in range(2)],
        sync_state_path={state!r},
        reconcile=True,
    )
    export >> update >> delete >> first_sync >> second_sync >> app >> reconciled
"""


def test_a_dag_run_sends_request_retry_wait_and_outcome_counters_to_statsd(
    dag_runner: Any, kumulos_emulator: KumulosEmulator, statsd: StatsdListener, tmp_path: Path
) -> None:
    kumulos_emulator.script_faults(
        [Fault("slow", delay=0), Fault("status", status=503), Fault("status", status=429, retry_after=1)],
        method="GET",
        path_prefix="/v2/users",
    )
    kumulos_emulator.reject_users({"m-4": (422, {"errors": {"n": ["bad"]}}), "m-9": (422, {"errors": {}})})
    delete_ids = [*kumulos_emulator.user_ids()[:3], "nobody-1", "nobody-2"]
    out = tmp_path / "users.jsonl"
    path = dag_runner.write(
        DAG.format(out=str(out), delete_ids=delete_ids, state=str(tmp_path / "state.sqlite"))
    )
    env = statsd.env()
    env["AIRFLOW_CONN_KUMULOS_DEFAULT"] = kumulos_emulator.connection_uri(max_retry_after=0.05)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "observability_metrics", "-f", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _task_states("observability_metrics") == {
        "export": "success",
        "set": "success",
        "delete": "success",
        "first_sync": "success",
        "second_sync": "success",
        "app": "success",
        "reconciled": "success",
    }
    counters, timers = statsd.counters(), statsd.timers()

    answered = Counter(
        (
            request.path.split("/")[-1] if "attributes" in request.path else "users",
            request.method,
            request.status,
        )
        for request in kumulos_emulator.requests
    )
    pages = answered["users", "GET", 200]
    assert pages == 5 + 1, "the export's pages and the reconcile's one"
    assert counters["kumulos.requests"] == len(kumulos_emulator.requests) == 7 + 20 + 5 + 3 + 1 + 3
    assert counters["kumulos.requests.list_users.200"] == pages
    assert counters["kumulos.requests.list_users.503"] == answered["users", "GET", 503] == 1
    assert counters["kumulos.requests.list_users.429"] == answered["users", "GET", 429] == 1
    assert counters["kumulos.requests.set_attributes.200"] == answered["attributes", "PUT", 200] == 18 + 3 + 2
    assert counters["kumulos.requests.set_attributes.422"] == answered["attributes", "PUT", 422] == 2
    assert (
        counters["kumulos.requests.delete_attributes.204"] == answered["attributes", "DELETE", 204] == 3 + 1
    )
    assert counters["kumulos.requests.delete_attributes.400"] == answered["attributes", "DELETE", 400] == 2

    assert counters["kumulos.retries"] == 2
    assert counters["kumulos.retries.list_users.503"] == counters["kumulos.retries.list_users.429"] == 1
    assert counters["kumulos.rate_limit_waits"] == counters["kumulos.rate_limit_waits.list_users"] == 1
    assert len(timers["kumulos.rate_limit_wait"]) == 1 and 0 <= timers["kumulos.rate_limit_wait"][0] <= 50

    written = len(out.read_bytes().splitlines())
    assert counters["kumulos.users_exported"] == counters["kumulos.users_exported.jsonl"] == written == 50
    assert counters["kumulos.records_written.set_attributes"] == 18 + 3 + 2
    assert counters["kumulos.records_failed.set_attributes"] == 2, "one per scripted rejection"
    assert counters["kumulos.records_written.delete_attributes"] == 5, "missing users count as done"
    assert counters["kumulos.records_failed.delete_attributes"] == 0
    assert counters["kumulos.records_written"] == 18 + 3 + 2 + 5 and counters["kumulos.records_failed"] == 2
    assert (
        counters["kumulos.records_unchanged"] == counters["kumulos.records_unchanged.set_attributes"] == 2 + 1
    )
    assert counters["kumulos.records_drifted"] == counters["kumulos.records_drifted.set_attributes"] == 1
    assert counters["kumulos.records_removed"] == counters["kumulos.records_removed.set_attributes"] == 1

    documented = _documented_metrics()
    assert documented, "docs/observability.md has a metrics table"
    for name in [*counters, *timers]:
        assert any(name == doc or name.startswith(doc + ".") for doc in documented), f"{name} is undocumented"
    base_names = {name for name in [*counters, *timers] if name in documented}
    assert base_names == documented, "every documented metric was seen in this run"


SNIPPET = """
from airflow_provider_kumulos import _metrics
_metrics.request("list users", 429)
_metrics.retry("set attributes", "KumulosTransportError")
"""


def _send_snippet(statsd: StatsdListener, expected: int, **metrics: str) -> list[str]:
    """Run two metric calls in a fresh Airflow process; the kumulos names the listener got."""
    subprocess.run([sys.executable, "-c", SNIPPET], env=statsd.env(**metrics), check=True, timeout=120)
    deadline = time.monotonic() + 5
    while len(statsd.names()) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return statsd.names()


def test_names_carrying_tag_values_follow_airflows_legacy_names_switch(statsd: StatsdListener) -> None:
    assert _send_snippet(statsd, 2, LEGACY_NAMES_ON="False") == ["kumulos.requests", "kumulos.retries"]


def test_tag_aware_statsd_receives_the_tags(statsd: StatsdListener) -> None:
    names = _send_snippet(statsd, 4, STATSD_INFLUXDB_ENABLED="True")
    assert "kumulos.requests,operation=list_users,status=429" in names
    assert "kumulos.retries,operation=set_attributes,reason=KumulosTransportError" in names
    assert (
        "kumulos.requests.list_users.429" in names
        and "kumulos.retries.set_attributes.KumulosTransportError" in names
    )
