"""The deployment test's own machinery: overlap figures, bounded waits and process-group shutdown.

These run in the normal suite (fast, no deployment); the deployment itself runs via ``.ci/e2e.sh``.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from e2e_procs import DeploymentError, ServiceGroup, base_env, descendants, wait_for
from e2e_timeline import overlap

from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _at(start: float, end: float) -> tuple[datetime, datetime]:
    return T0 + timedelta(seconds=start), T0 + timedelta(seconds=end)


def test_overlap_counts_peak_and_time_with_two_or_more_running() -> None:
    figures = overlap([_at(0, 10), _at(2, 6), _at(4, 12), _at(20, 21)])
    assert figures.peak == 3
    assert figures.seconds == pytest.approx(8.0)  # 2..10 has >= 2 open (0..2 and 10..12 do not)
    assert figures.span == pytest.approx(21.0)


def test_intervals_that_only_touch_do_not_overlap() -> None:
    figures = overlap([_at(0, 5), _at(5, 9), _at(9, 10)])
    assert (figures.peak, figures.seconds) == (1, 0.0)


def test_no_intervals_means_no_concurrency() -> None:
    assert overlap([]).peak == 0


def test_an_interval_ending_before_it_starts_is_rejected() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        overlap([_at(5, 1)])


def test_wait_for_returns_the_first_answer() -> None:
    answers = iter([None, None, "ready"])
    assert wait_for("three polls", lambda: next(answers), timeout=5, interval=0.01) == "ready"


def test_wait_for_gives_up_at_its_deadline_naming_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(DeploymentError, match="timed out after 0s waiting for the moon"):
        wait_for("the moon", lambda: None, timeout=0.3, interval=0.05)
    assert time.monotonic() - started < 2.0


def test_wait_for_fails_fast_when_a_service_died(tmp_path: Path) -> None:
    services = ServiceGroup(tmp_path, tmp_path / "pgids")
    services.start("short-lived", [sys.executable, "-c", "print('bye')"], base_env())
    time.sleep(0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DeploymentError, match="service short-lived exited early"):
            wait_for("something else", lambda: None, timeout=30, services=services, interval=0.05)
    finally:
        services.stop_all()
    assert time.monotonic() - started < 5.0
    assert (tmp_path / "short-lived.log").read_text().strip() == "bye"


def test_stop_ends_the_whole_process_group_and_forgets_its_id(tmp_path: Path) -> None:
    services = ServiceGroup(tmp_path, tmp_path / "pgids")
    child_pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {child_pid_file}; wait"
    service = services.start("shell", ["/bin/sh", "-c", script], base_env())
    wait_for(
        "the child", lambda: (child_pid_file.exists() and child_pid_file.read_text().strip()) or None, 10
    )
    child = int(child_pid_file.read_text())
    assert (tmp_path / "pgids").read_text() == f"{service.pid} shell\n"
    services.stop_all()
    assert not service.alive()
    assert not _running(child)
    assert (tmp_path / "pgids").read_text() == ""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_base_env_drops_airflow_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("KUMULOS_E2E_PROBE", "kept")
    env = base_env()
    assert "AIRFLOW__CORE__EXECUTOR" not in env
    assert env["KUMULOS_E2E_PROBE"] == "kept"


def test_kill_reaches_processes_in_another_process_group(tmp_path: Path) -> None:
    """A lost worker takes its task along, although Airflow puts the task in a group of its own."""
    services = ServiceGroup(tmp_path, tmp_path / "pgids")
    child_pid_file = tmp_path / "child.pid"
    script = f"setsid sleep 60 & echo $! > {child_pid_file}; wait"
    service = services.start("worker", ["/bin/sh", "-c", script], base_env())
    wait_for(
        "the child", lambda: (child_pid_file.exists() and child_pid_file.read_text().strip()) or None, 10
    )
    child = int(child_pid_file.read_text())
    try:
        wait_for("the child's own group", lambda: True if os.getpgid(child) == child else None, 10)
        assert child in descendants(service.pid)
        killed = services.kill(service)
    finally:
        services.stop_all()
    assert {service.pid, child} <= set(killed)
    assert not service.alive()
    wait_for("the child to die", lambda: True if not _running(child) else None, 5, interval=0.05)
    assert (tmp_path / "pgids").read_text() == ""


def test_the_deployment_test_dags_parse(airflow_home: Path) -> None:
    """The sensor burst's and the fault scenarios' DAGs, checked here rather than mid-deployment."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # older Airflow 3 releases
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(str(Path(__file__).with_name("dags")))
    assert bag.import_errors == {}
    assert set(bag.dags) == {
        "kumulos_e2e_sensor_burst",
        "kumulos_e2e_export_resume",
        "kumulos_e2e_export_outage",
        "kumulos_e2e_bulk_worker_lost",
        "kumulos_e2e_bulk_worker_lost_sync",
        "kumulos_e2e_warehouse",
    }
    synced = bag.dags["kumulos_e2e_bulk_worker_lost_sync"].get_task("set_attributes")
    assert isinstance(synced, SetAttributesOperator)
    assert (synced.retries or 0) >= 1 and synced.checkpoint_interval < 60
    burst = bag.dags["kumulos_e2e_sensor_burst"]
    assert burst.params["count"] == 100 and burst.max_active_tasks >= 100
    resume = bag.dags["kumulos_e2e_export_resume"]
    assert resume.get_task("export").retries >= 1 and resume.get_task("reference").retries == 0
