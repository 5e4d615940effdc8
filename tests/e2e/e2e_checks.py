"""What the deployment must show for each example DAG, observed only through Airflow's REST API,
the emulator's admin API and the files the DAGs wrote."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from e2e_emulator import EmulatorAdmin
from e2e_leaks import person
from e2e_procs import DeploymentError, wait_for
from e2e_rest import AirflowAPI, TaskRun
from e2e_storage import ObjectReader
from e2e_timeline import overlap

RUN_TIMEOUT = 300.0
SEGMENT_KEYS = ("activity", "primary_platform")
_MISSING = object()


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


def _examples(items: Iterable[Any], limit: int = 3) -> str:
    items = list(items)
    return f"{len(items)} (e.g. {items[:limit]})"


class Checks:
    """One method per example DAG; each raises DeploymentError with the evidence when a check fails."""

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
        #: The latest successful run of each DAG, for later phases that look at it again.
        self.latest: dict[str, RunResult] = {}

    def run_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> RunResult:
        """Trigger ``dag_id`` through the API and wait for it to succeed."""
        started = time.monotonic()
        run_id = self.api.trigger(dag_id, conf)
        return self.finish(dag_id, run_id, started)

    def scheduled_run(self, dag_id: str) -> RunResult:
        """Unpause a scheduled DAG: the scheduler must start its latest interval's run by itself."""
        started = time.monotonic()
        self.api.unpause(dag_id)
        run_id = wait_for(
            f"the scheduler to start a run of {dag_id} after unpausing",
            lambda: next(iter(self.api.run_ids(dag_id, "scheduled")), None),
            timeout=120,
        )
        return self.finish(dag_id, run_id, started)

    def finish(self, dag_id: str, run_id: str, started: float) -> RunResult:
        state = self.api.wait_run(dag_id, run_id, RUN_TIMEOUT, self.check_alive)
        tasks = self.api.task_runs(dag_id, run_id)
        if state != "success":
            listing = ", ".join(f"{task.label}={task.state}" for task in tasks)
            raise DeploymentError(f"{dag_id} run {run_id} ended {state}: {listing}")
        result = RunResult(dag_id, run_id, time.monotonic() - started, tasks)
        self.latest[dag_id] = result
        return result

    def covers_every_user_once(self, paths: list[str]) -> int:
        """The JSON Lines files at ``paths`` hold each emulator user exactly once; returns the count."""
        exported: Counter[str] = Counter()
        for path in paths:
            for line in self.reader.read(path).splitlines():
                if line.strip():
                    exported[json.loads(line)["identifier"]] += 1
        expected = set(self.emulator.user_ids())
        duplicates = [identifier for identifier, count in exported.items() if count > 1]
        missing = sorted(expected - set(exported))
        unexpected = sorted(set(exported) - expected)
        _require(
            not (duplicates or missing or unexpected),
            f"export coverage wrong: duplicated {_examples(duplicates)}, missing {_examples(missing)}, "
            f"unexpected {_examples(unexpected)}",
        )
        return sum(exported.values())

    # -- kumulos_export_users ----------------------------------------------------------------

    def export_users(self) -> None:
        """The scheduled run and a rerun triggered through the API each export every user once."""
        for kind, start in (("scheduled", self.scheduled_run), ("triggered", self.run_dag)):
            result = start("kumulos_export_users")
            summary = self.api.xcom(result.dag_id, result.run_id, "export_users")
            users = self.covers_every_user_once([summary["path"]])
            _require(
                summary["users_written"] == users,
                f"summary says {summary['users_written']}, file has {users}",
            )
            self.figures.add(f"export users: {kind} run", f"{result.seconds:.1f}s to success, {users} users")

    # -- kumulos_parallel_export ------------------------------------------------------------

    def parallel_export(self, label: str, workers: set[str] | None = None) -> None:
        """Partitions ran at the same time in separate processes; the manifest covers every user once.

        ``workers``: when given (Celery), the partitions must have run on every one of these hosts.
        """
        self.api.unpause("kumulos_parallel_export")
        users = len(self.emulator.user_ids())
        page_size = min(1000, max(1, math.ceil(users / 8)))  # 8 pages: 4 partitions of 2 pages
        result = self.run_dag("kumulos_parallel_export", {"partitions": 4, "page_size": page_size})
        partitions = [task for task in result.tasks if task.task_id == "export_partition"]
        _require(len(partitions) == 4, f"expected 4 mapped partitions, got {[t.label for t in partitions]}")
        timing = overlap([(task.start, task.end) for task in partitions if task.start and task.end])
        _require(
            timing.peak >= 2,
            f"partitions never overlapped: {[(t.label, t.start, t.end) for t in partitions]}",
        )
        processes = {(task.hostname, task.pid) for task in partitions}
        _require(
            len(processes) == len(partitions), f"partitions shared processes: {sorted(map(str, processes))}"
        )
        hosts = {str(task.hostname) for task in partitions}
        if workers is not None:
            _require(
                workers <= hosts, f"partitions ran on {sorted(hosts)}, expected all of {sorted(workers)}"
            )
        summary = self.api.xcom(result.dag_id, result.run_id, "write_manifest")
        _require(
            summary["cross_partition_duplicates"] == 0 and not summary["page_gaps"],
            f"manifest reports duplicates/gaps: {summary}",
        )
        manifest = json.loads(self.reader.read(summary["manifest"]))
        files = [file["path"] for partition in manifest["partitions"] for file in partition["files"]]
        exported = self.covers_every_user_once(files)
        self.figures.add(f"{label}: run", f"{result.seconds:.1f}s from trigger to success")
        self.figures.add(
            f"{label}: partitions",
            f"{len(partitions)} in {len(processes)} processes on {len(hosts)} host(s) {sorted(hosts)}, "
            f"peak {timing.peak} at once, >=2 running for {timing.seconds:.1f}s of {timing.span:.1f}s",
        )
        self.figures.add(f"{label}: manifest", f"{len(files)} files, {exported} users, each exactly once")

    # -- kumulos_onboarding -----------------------------------------------------------------

    def onboarding(self) -> None:
        """The sensor defers while the user is missing; the triggerer completes it once they appear."""
        user_id = f"e2e-onboarding-{uuid.uuid4().hex[:8]}"
        self.api.unpause("kumulos_onboarding")
        started = time.monotonic()
        run_id = self.api.trigger("kumulos_onboarding", {"user_id": user_id})
        sensor = wait_for(
            "the onboarding sensor to be deferred and claimed by the triggerer",
            lambda: self._deferred_sensor(run_id),
            timeout=120,
        )
        deferred_at = time.monotonic()
        # The worker checks once before deferring; a second 404 can only come from the triggerer.
        polls = wait_for(
            "the triggerer to poll for the missing user",
            lambda: self._triggerer_polls(user_id),
            timeout=60,
        )
        states = {task.label: task.state for task in self.api.task_runs("kumulos_onboarding", run_id)}
        _require(
            states.get("wait_for_user") == "deferred",
            f"sensor left deferred before the user existed: {states}",
        )
        attributes = {"source": "e2e", **person()}
        self.emulator.add_user(user_id, attributes)
        created, created_at = time.monotonic(), datetime.now(timezone.utc)
        result = self.finish("kumulos_onboarding", run_id, started)
        sensor_end = next(task.end for task in result.tasks if task.task_id == "wait_for_user")
        writes = [
            (entry["method"], entry["status"], entry["body"])
            for entry in self.emulator.requests()
            if entry.get("identifier") == user_id and entry["method"] in ("PUT", "DELETE")
        ]
        put = json.loads(writes[0][2]) if writes and writes[0][0] == "PUT" else {}
        _require(
            [(method, status) for method, status, _ in writes] == [("PUT", 200), ("DELETE", 204)]
            and put == {**attributes, "onboarding_stage": "welcome", "onboarding_run": run_id},
            f"expected a merged PUT then a DELETE for {user_id}, got {writes}",
        )
        self.figures.add("onboarding: run", f"{result.seconds:.1f}s from trigger to success")
        self.figures.add(
            "onboarding: deferred",
            f"sensor deferred to {sensor.trigger_classpath}, {created - deferred_at:.1f}s observed deferred, "
            f"{len(polls)} lookups answered 404 before the user existed",
        )
        sensor_after = (sensor_end - created_at).total_seconds() if sensor_end else float("nan")
        self.figures.add(
            "onboarding: completion",
            f"sensor succeeded {sensor_after:.1f}s and the run {time.monotonic() - created:.1f}s "
            "after the user was created",
        )

    def _deferred_sensor(self, run_id: str) -> TaskRun | None:
        for task in self.api.task_runs("kumulos_onboarding", run_id):
            if task.state in ("failed", "upstream_failed", "up_for_retry"):
                raise DeploymentError(f"onboarding task {task.label} {task.state} before deferring")
            if task.task_id == "wait_for_user" and task.state == "deferred" and task.triggerer_id is not None:
                return task
        return None

    def _triggerer_polls(self, user_id: str) -> list[dict[str, Any]] | None:
        """The 404 lookups of ``user_id`` once there are at least two (the first is the worker's)."""
        misses = [
            entry
            for entry in self.emulator.requests()
            if entry.get("identifier") == user_id and entry["method"] == "GET" and entry["status"] == 404
        ]
        return misses if len(misses) >= 2 else None

    # -- kumulos_segment_refresh ------------------------------------------------------------

    def segment_refresh(self) -> None:
        """The scheduled run sets the segment attributes on every user and keeps the app's attributes
        (merge). Then one user starts using the web app; a rerun triggered through the API must send
        only that user and those whose ``activity`` changed between the two runs' ``as_of`` (the others
        already hold their segments in the export it reconciles against; none drifted), and leave
        every user consistent again."""
        before = {identifier: self._attributes(identifier) for identifier in self.emulator.user_ids()}
        _require(
            not any(key in attributes for attributes in before.values() for key in SEGMENT_KEYS),
            "users already hold segment attributes before the first segment refresh",
        )
        previous: datetime | None = None
        moved: set[str] = set()
        for kind, start in (("scheduled", self.scheduled_run), ("triggered", self.run_dag)):
            since = time.time()
            result = start("kumulos_segment_refresh")
            report = self.api.xcom(result.dag_id, result.run_id, "report")
            _require(
                report["failures"] == 0 and report["removed"] == 0 and report["drifted"] == 0,
                f"segment refresh reported failures, removals or drifted users: {report}",
            )
            as_of = datetime.fromisoformat(report["as_of"])
            flipped = self._check_segments(before, as_of, previous)
            expected = set(before) if previous is None else flipped | moved
            written = {
                entry["identifier"]
                for entry in self.emulator.requests()
                if entry["timestamp"] >= since and entry["method"] == "PUT"
            }
            _require(
                written == expected
                and report["sent"] == len(expected)
                and report["unchanged"] == len(before) - len(expected)
                and report["requests"] == 2 * len(expected),
                f"{kind} refresh sent {report['sent']} users ({report['unchanged']} unchanged, "
                f"{report['requests']} requests; PUT for {_examples(sorted(written))}), expected "
                f"{_examples(sorted(expected))} of {len(before)} with a GET and a PUT each",
            )
            previous = as_of
            self.figures.add(
                f"segment refresh: {kind} run",
                f"{result.seconds:.1f}s to success, {report['sent']} of {len(before)} users sent, "
                f"{report['unchanged']} unchanged ({report['inactive_30d']} inactive_30d), "
                "every user consistent, other attributes kept",
            )
            if not moved:
                moved = {self._start_on_web(sorted(before))}

    def _start_on_web(self, identifiers: list[str]) -> str:
        """The first of ``identifiers`` not yet on the web is now active on a web install only (same
        attributes), so its segments change; returns it."""
        for identifier in identifiers:
            user = self.emulator.user(identifier) or {}
            if (user.get("attributes") or {}).get("primary_platform") != "web":
                break
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.emulator.client.delete(f"/users/{quote(identifier, safe='')}").raise_for_status()
        fields = {"lastActive": now, "installs": [{"id": "e2e-web", "os": "Web", "lastActive": now}]}
        self.emulator.client.post(
            "/users", json={"identifier": identifier, "attributes": user.get("attributes") or {}, **fields}
        ).raise_for_status()
        return identifier

    def _check_segments(
        self, before: dict[str, dict[str, Any]], as_of: datetime, previous: datetime | None
    ) -> set[str]:
        """Every user holds segment attributes that fit ``as_of``, and kept all its other attributes.

        Returns the users whose ``activity`` differs between ``previous`` and ``as_of``.
        """
        wrong, lost, flipped = [], [], set()
        for identifier, old in before.items():
            user = self.emulator.user(identifier) or {}
            new = user.get("attributes") or {}
            if any(new.get(key, _MISSING) != value for key, value in old.items()):
                lost.append(identifier)
            if not _segment_consistent(user, new, as_of):
                wrong.append((identifier, {key: new.get(key) for key in SEGMENT_KEYS}))
            if previous is not None and _inactive(user, previous) != _inactive(user, as_of):
                flipped.add(identifier)
        _require(not wrong, f"users without consistent segment attributes: {_examples(wrong)}")
        _require(not lost, f"users whose other attributes were lost: {_examples(lost)}")
        return flipped

    def _attributes(self, identifier: str) -> dict[str, Any]:
        return dict((self.emulator.user(identifier) or {}).get("attributes") or {})


def _inactive(user: dict[str, Any], as_of: datetime) -> bool:
    """The example's ``inactive_30d``: no ``lastActive``, or more than 30 days before ``as_of``."""
    last_active = user.get("lastActive")
    return last_active is None or datetime.fromisoformat(last_active) < as_of - timedelta(days=30)


def _segment_consistent(user: dict[str, Any], attributes: dict[str, Any], as_of: datetime) -> bool:
    """The documented meaning of the two segment attributes holds for ``user``."""
    activity = "inactive_30d" if _inactive(user, as_of) else "active"
    platforms = {str(install.get("os") or "").lower() for install in user.get("installs") or []} - {""}
    return attributes.get("activity") == activity and (
        attributes.get("primary_platform") in platforms
        if platforms
        else attributes.get("primary_platform") == "unknown"
    )
