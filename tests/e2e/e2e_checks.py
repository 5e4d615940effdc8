"""What the deployment must show for each example DAG, observed only through Airflow's API,
the emulator's admin API and the objects the DAGs wrote."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from e2e_emulator import EmulatorAdmin
from e2e_procs import DeploymentError, wait_for
from e2e_rest import AirflowAPI, TaskRun
from e2e_storage import ObjectReader
from e2e_timeline import overlap

RUN_TIMEOUT = 300.0


@dataclass
class RunResult:
    """A finished DAG run: its tasks as the API reports them and how long it took from trigger."""

    dag_id: str
    run_id: str
    seconds: float
    tasks: list[TaskRun]


@dataclass
class Figures:
    """Named figures for the summary, in the order they were measured."""

    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: str) -> None:
        self.rows.append((name, value))

    def render(self) -> str:
        width = max((len(name) for name, _ in self.rows), default=0)
        return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in self.rows)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DeploymentError(message)


class Checks:
    """One method per scenario; each raises DeploymentError with the evidence when a check fails."""

    def __init__(
        self,
        api: AirflowAPI,
        emulator: EmulatorAdmin,
        reader: ObjectReader,
        figures: Figures,
        check_alive: Callable[[], None],
    ) -> None:
        self.api = api
        self.emulator = emulator
        self.reader = reader
        self.figures = figures
        self.check_alive = check_alive

    def run_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> RunResult:
        """Trigger ``dag_id`` through the API and wait for it to succeed."""
        started = time.monotonic()
        run_id = self.api.trigger(dag_id, conf)
        return self.finish(dag_id, run_id, started)

    def finish(self, dag_id: str, run_id: str, started: float) -> RunResult:
        state = self.api.wait_run(dag_id, run_id, RUN_TIMEOUT, self.check_alive)
        tasks = self.api.task_runs(dag_id, run_id)
        if state != "success":
            listing = ", ".join(f"{task.label}={task.state}" for task in tasks)
            raise DeploymentError(f"{dag_id} run {run_id} ended {state}: {listing}")
        return RunResult(dag_id, run_id, time.monotonic() - started, tasks)

    # -- kumulos_export_users ----------------------------------------------------------------

    def export_users(self) -> None:
        """The single-task export runs to success on a worker."""
        result = self.run_dag("kumulos_export_users")
        self.figures.add("export users: run", f"{result.seconds:.1f}s from trigger to success")

    # -- kumulos_parallel_export ------------------------------------------------------------

    def parallel_export(self, label: str, workers: set[str] | None = None) -> None:
        """Partitions ran at the same time in separate processes; the parts hold every user once.

        ``workers``: when given (Celery), the partitions must have run on every one of these hosts.
        """
        result = self.run_dag("kumulos_parallel_export")
        partitions = _mapped_partitions(result.tasks)
        _require(len(partitions) >= 2, f"expected at least 2 mapped partitions, got {len(partitions)}")
        timing = overlap([(task.start, task.end) for task in partitions if task.start and task.end])
        pids = {(task.hostname, task.pid) for task in partitions}
        _require(
            timing.peak >= 2,
            f"partitions never overlapped: {[(t.label, t.start, t.end) for t in partitions]}",
        )
        _require(
            len(pids) == len(partitions), f"partitions shared worker processes: {sorted(map(str, pids))}"
        )
        if workers is not None:
            seen = {task.hostname for task in partitions}
            _require(
                workers <= seen,
                f"partitions ran on {sorted(map(str, seen))}, expected all of {sorted(workers)}",
            )
        exported = self._exported_user_ids(result)
        expected = Counter(self.emulator.user_ids())
        duplicates = sorted(identifier for identifier, count in exported.items() if count > 1)
        missing = sorted(set(expected) - set(exported))
        unexpected = sorted(set(exported) - set(expected))
        _require(
            not (duplicates or missing or unexpected),
            f"manifest coverage wrong: {len(duplicates)} duplicated (e.g. {duplicates[:3]}), "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})",
        )
        self.figures.add(f"{label}: run", f"{result.seconds:.1f}s from trigger to success")
        self.figures.add(
            f"{label}: partitions",
            f"{len(partitions)} in {len(pids)} processes"
            + (f" on {len({task.hostname for task in partitions})} workers" if workers else "")
            + f", peak {timing.peak} at once, {timing.seconds:.1f}s of {timing.span:.1f}s with >=2 running",
        )
        self.figures.add(f"{label}: coverage", f"{sum(exported.values())} users exported, each exactly once")

    def _exported_user_ids(self, result: RunResult) -> Counter[str]:
        """Identifiers of every user line in every part the run's manifest lists."""
        manifest_task = result.tasks[-1].task_id
        summary = self.api.xcom(result.dag_id, result.run_id, "write_manifest")
        _require(
            isinstance(summary, dict) and "manifest" in summary, f"no manifest in XCom of {manifest_task}"
        )
        manifest = json.loads(self.reader.read(summary["manifest"]))
        identifiers: Counter[str] = Counter()
        for part in manifest["parts"]:
            for line in self.reader.read(part["path"]).splitlines():
                if line.strip():
                    identifiers[json.loads(line)["identifier"]] += 1
        return identifiers

    # -- kumulos_onboarding -----------------------------------------------------------------

    def onboarding(self) -> None:
        """The sensor defers while the user is missing; the triggerer completes it once they appear."""
        user_id = f"e2e-onboarding-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        run_id = self.api.trigger("kumulos_onboarding", {"user_id": user_id})
        sensor = wait_for(
            "the onboarding sensor to be deferred and picked up by the triggerer",
            lambda: self._deferred_task(run_id),
            timeout=120,
        )
        deferred_at = time.monotonic()
        time.sleep(5.0)
        still = {task.label: task.state for task in self.api.task_runs("kumulos_onboarding", run_id)}
        _require(
            still.get(sensor.label) == "deferred", f"sensor left deferred before the user existed: {still}"
        )
        polled = [entry for entry in self.emulator.requests() if entry.get("identifier") == user_id]
        _require(
            any(entry["status"] == 404 for entry in polled),
            f"the trigger never asked Kumulos about {user_id!r} while deferred",
        )
        self.emulator.add_user(user_id, {"source": "e2e"})
        created = time.monotonic()
        result = self.finish("kumulos_onboarding", run_id, started)
        sensor_done = next(task for task in result.tasks if task.label == sensor.label)
        _require(sensor_done.state == "success", f"sensor ended {sensor_done.state}")
        self.figures.add("onboarding: run", f"{result.seconds:.1f}s from trigger to success")
        self.figures.add(
            "onboarding: deferred",
            f"{sensor.label} deferred to {sensor.trigger_classpath} for {created - deferred_at:.1f}s "
            f"before the user existed, {len(polled)} polls answered 404",
        )
        self.figures.add(
            "onboarding: completion", f"run finished {time.monotonic() - created:.1f}s after user creation"
        )

    def _deferred_task(self, run_id: str) -> TaskRun | None:
        for task in self.api.task_runs("kumulos_onboarding", run_id):
            if task.state in ("failed", "upstream_failed"):
                raise DeploymentError(f"onboarding task {task.label} {task.state} before deferring")
            if task.state == "deferred" and task.triggerer_id is not None:
                return task
        return None

    # -- kumulos_segment_refresh ------------------------------------------------------------

    def segment_refresh(self, expected_attributes: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """The run succeeds and every user now carries the attributes the DAG computes."""
        result = self.run_dag("kumulos_segment_refresh")
        wrong = []
        identifiers = self.emulator.user_ids()
        for identifier in identifiers:
            user = self.emulator.user(identifier) or {}
            expected = expected_attributes(user)
            actual = {key: (user.get("attributes") or {}).get(key) for key in expected}
            if actual != expected:
                wrong.append((identifier, actual, expected))
        _require(not wrong, f"{len(wrong)} users lack the computed attributes, e.g. {wrong[:3]}")
        self.figures.add("segment refresh: run", f"{result.seconds:.1f}s from trigger to success")
        self.figures.add("segment refresh: users", f"{len(identifiers)} users hold the computed attributes")


def _mapped_partitions(tasks: list[TaskRun]) -> list[TaskRun]:
    """The mapped task with the most instances: the export partitions."""
    by_task: dict[str, list[TaskRun]] = {}
    for task in tasks:
        if task.map_index >= 0:
            by_task.setdefault(task.task_id, []).append(task)
    return max(by_task.values(), key=len, default=[])
