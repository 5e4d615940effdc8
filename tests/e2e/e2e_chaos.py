"""Faults on the running deployment: what production kills, and proof that nothing is lost.

Six scenarios, run after the regular checks on the CeleryExecutor deployment: a task process
killed mid-export, a whole Celery worker lost mid bulk write (twice: keeping a checkpointed sync
state, then reconciling), the triggerer restarted under a deferred sensor, the scheduler restarted
during the parallel export, a 30-second API outage during an export, and the triggerer SIGKILLed
under deferred sensors while a second one runs. Each asserts its outcome from the emulator's request log, the files in S3 and the
metadata database (REST API and PostgreSQL), and prints one line of figures.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sqlite3
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from e2e_airflow import AirflowDeployment
from e2e_checks import Checks, Figures
from e2e_emulator import EmulatorAdmin
from e2e_leaks import person
from e2e_postgres import PostgresCluster
from e2e_procs import DeploymentError, Service, ServiceGroup, descendants, wait_for
from e2e_rest import AirflowAPI, TaskRun

#: Settings every component gets when the scenarios run: a task whose worker vanished stops
#: heartbeating, and the scheduler notices within ``timeout + detection interval`` seconds
#: (defaults: 300 s and 10 s). Workers heartbeat every ``min_heartbeat_interval`` (5 s) anyway.
AIRFLOW_SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "15",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
}
#: The resumable export of ``kumulos_e2e_export_resume``: users per part, users per page.
SPLIT_EVERY, PAGE_SIZE = 100, 20
PAGES_PER_PART = SPLIT_EVERY // PAGE_SIZE
#: Requests the export keeps in flight (``max_concurrency`` default), i.e. pages fetched ahead.
AHEAD = 2
OUTAGE_SECONDS = 30.0
BULK_RECORDS = 5_000
#: ``checkpoint_interval`` of ``kumulos_e2e_bulk_worker_lost_sync`` (tests/e2e/dags).
CHECKPOINT_INTERVAL = 2.0
#: Deferred sensors under the triggerer that scenario 6 kills, and the DAG they run in.
KILLED_SENSORS, BURST_DAG = 10, "kumulos_e2e_sensor_burst"
#: Airflow's defaults, left as they are: a triggerer heartbeats every ``[triggerer] job_heartbeat_sec``
#: and its triggers go to another once its last heartbeat is older than
#: ``[triggerer] triggerer_health_check_threshold``.
TRIGGERER_HEARTBEAT, TRIGGERER_THRESHOLD = 5.0, 30.0
RUN_TIMEOUT = 300.0
KILL_DAG, RESTART_DAG = "kumulos_e2e_export_resume", "kumulos_onboarding"
TYPED_ERRORS = ("KumulosServerError", "KumulosTransportError", "KumulosRateLimitError")


@dataclass(frozen=True)
class Outcome:
    """The figures every scenario reports."""

    recovered_s: float
    pages_twice: int
    records_again: int
    tries: str

    def line(self) -> str:
        return (
            f"time to recover {self.recovered_s:.1f}s, pages fetched twice {self.pages_twice}, "
            f"records sent again {self.records_again}, task tries {self.tries}"
        )


@dataclass
class _Killed:
    """Scenario 1 in progress: the run, its folder, and what the kill left behind."""

    run_id: str
    folder: str
    worker: str = ""
    pid: int = 0
    killed_at: float = 0.0
    checkpoint: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Restarted:
    """Scenario 3 in progress: the run, its user, and how the restart went."""

    run_id: str
    user_id: str
    recovered_s: float = math.nan
    moved: tuple[int | None, int | None] = (None, None)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DeploymentError(message)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def _pages(entries: Iterable[dict[str, Any]], per_page: int) -> list[int]:
    """Users pages of size ``per_page`` answered 200, in the order answered."""
    return [
        int(entry["query"]["currentPage"][0])
        for entry in entries
        if entry["method"] == "GET"
        and entry["path"] == "/v2/users"
        and entry["query"].get("numberPerPage") == [str(per_page)]
        and entry["status"] == 200
    ]


def _twice(pages: list[int]) -> int:
    """Pages answered more than once."""
    return sum(1 for count in Counter(pages).values() if count > 1)


class Chaos:
    """The six scenarios; each raises DeploymentError with the evidence when its outcome is wrong."""

    def __init__(
        self,
        checks: Checks,
        deployment: AirflowDeployment,
        postgres: PostgresCluster,
        services: ServiceGroup,
        bucket: str,
        keys: tuple[str, str],
    ) -> None:
        self.checks = checks
        self.api: AirflowAPI = checks.api
        self.emulator: EmulatorAdmin = checks.emulator
        self.reader = checks.reader
        self.figures: Figures = checks.figures
        self.deployment = deployment
        self.postgres = postgres
        self.services = services
        self.bucket = bucket
        self.keys = keys
        self.tag = uuid.uuid4().hex[:8]

    # -- shared helpers ---------------------------------------------------------------------

    def _report(self, name: str, outcome: Outcome, detail: str) -> None:
        print(f"[chaos] {name}: {outcome.line()}", flush=True)
        self.figures.add(f"chaos: {name}", outcome.line())
        self.figures.add(f"chaos: {name} (detail)", detail)

    def prepare(self, latency: float, dags: Iterable[str]) -> None:
        """No faults, a clean request log, the emulator's latency, and the DAGs unpaused."""
        self.emulator.clear_faults()
        self.emulator.clear_requests()
        self.emulator.set_latency(latency)
        for dag_id in dags:
            self.api.unpause(dag_id)

    def _start(self, dag_id: str, conf: dict[str, Any], latency: float) -> str:
        """:meth:`prepare`, then a manual run of ``dag_id``."""
        self.prepare(latency, [dag_id])
        return self.api.trigger(dag_id, conf)

    def _folder(self, name: str) -> str:
        return f"s3://aws_default@{self.bucket}/chaos/{self.tag}/{name}"

    def _keys(self, prefix: str) -> list[str]:
        """Object keys under ``prefix`` (a URL from :meth:`_folder`), temporaries included."""
        key_prefix = prefix.split(f"@{self.bucket}/", 1)[1]
        listing = self.reader.s3.list_objects_v2(Bucket=self.bucket, Prefix=key_prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def _uploads(self, prefix: str) -> list[str]:
        """Keys of the incomplete multipart uploads under ``prefix`` (a URL from :meth:`_folder`)."""
        key_prefix = prefix.split(f"@{self.bucket}/", 1)[1]
        listing = self.reader.s3.list_multipart_uploads(Bucket=self.bucket, Prefix=key_prefix)
        return sorted(upload["Key"] for upload in listing.get("Uploads", []))

    def _running(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> TaskRun | None:
        """The task instance once it runs try ``try_number`` with a known process id (a retry that
        already succeeded counts too)."""
        task = self.api.task_run(dag_id, run_id, task_id)
        if try_number > 1 and task.state == "success" and task.try_number >= try_number:
            return task
        if task.state in ("success", "failed", "upstream_failed"):
            raise DeploymentError(f"{dag_id}.{task_id} ended {task.state} before the fault was injected")
        if task.state == "running" and task.try_number == try_number and task.pid:
            return task
        return None

    def _worker_of(self, pid: int) -> str:
        """Name of the Celery worker service whose process tree holds ``pid`` (so we only ever
        signal processes this test started)."""
        for service in self.services.services:
            if service.name.startswith("celery-worker") and pid in descendants(service.pid):
                return service.name
        raise DeploymentError(f"process {pid} is not under any Celery worker this test started")

    def _finish(self, dag_id: str, run_id: str) -> list[TaskRun]:
        state = self.api.wait_run(dag_id, run_id, RUN_TIMEOUT, self.services.check_alive)
        tasks = self.api.task_runs(dag_id, run_id)
        _require(
            state == "success",
            f"{dag_id} run {run_id} ended {state}: {[(t.label, t.state, t.try_number) for t in tasks]}",
        )
        return tasks

    # -- 1. task process killed mid-export ------------------------------------------------------

    def kill_begin(self) -> _Killed:
        """Start the resumable export and its undisturbed twin (the log and latency are set up by
        the caller, as scenario 3 runs alongside)."""
        folder = self._folder("resume")
        return _Killed(self.api.trigger(KILL_DAG, {"folder": folder}), folder)

    def kill_fault(self, run: _Killed) -> None:
        """SIGKILL the export's task process once two parts are done and the third half fetched."""
        task = wait_for(
            "the export's first try to run",
            lambda: self._running(KILL_DAG, run.run_id, "export"),
            timeout=120,
            services=self.services,
            interval=0.2,
        )
        run.worker = self._worker_of(task.pid or 0)
        wait_for(
            "the export to reach the middle of its third part",
            lambda: (
                True if len(_pages(self.emulator.requests(), PAGE_SIZE)) >= 2 * PAGES_PER_PART + 2 else None
            ),
            timeout=120,
            interval=0.05,
        )
        os.kill(task.pid or 0, signal.SIGKILL)
        run.killed_at, run.pid = time.time(), task.pid or 0
        _require(
            self.api.task_run(KILL_DAG, run.run_id, "export").state != "success",
            "the export had finished before the kill",
        )
        run.checkpoint = wait_for(
            "the checkpoint in the task state store",
            lambda: self._checkpoint(KILL_DAG, run.run_id, "export"),
            timeout=30,
        )
        _require(
            not any(key.endswith("_manifest.json") for key in self._keys(f"{run.folder}/killed")),
            "a manifest was published by the killed attempt",
        )

    def kill_finish(self, run: _Killed) -> None:
        """The retry resumed from the task state store, fetched at most one part (plus the pages
        ahead) again, and its parts equal the undisturbed export's."""
        tasks = self._finish(KILL_DAG, run.run_id)
        tries = self.api.tries(KILL_DAG, run.run_id, "export")
        _require(
            len(tries) == 2 and tries[0].state == "failed",
            f"expected one failed try then a success, got {[(t.try_number, t.state) for t in tries]}",
        )
        retry_start = tries[1].start
        if retry_start is None:
            raise DeploymentError("the retry has no start date")
        entries = self.emulator.requests()
        before = [e for e in entries if _utc(e["timestamp"]) < retry_start]
        after = [e for e in entries if _utc(e["timestamp"]) >= retry_start]
        killed_pages, retry_pages = _pages(before, PAGE_SIZE), _pages(after, PAGE_SIZE)
        resumed = int(self.api.xcom(KILL_DAG, run.run_id, "export")["resumed_parts"])
        parts_at_kill = len(run.checkpoint["parts"])
        _require(
            resumed == parts_at_kill and resumed >= 1,
            f"the retry resumed after {resumed} parts; the state store held {parts_at_kill}",
        )
        _require(
            bool(retry_pages) and retry_pages[0] == resumed * PAGES_PER_PART + 1,
            f"the retry started at page {retry_pages[:1]}, expected {resumed * PAGES_PER_PART + 1}",
        )
        refetched = sorted(set(killed_pages) & set(retry_pages))
        _require(
            len(refetched) <= PAGES_PER_PART + AHEAD,
            f"pages fetched twice {refetched}: more than one part ({PAGES_PER_PART}) + {AHEAD} ahead",
        )
        killed_parts = self._parts(f"{run.folder}/killed")
        reference_parts = self._parts(f"{run.folder}/reference")
        _require(
            killed_parts == reference_parts,
            "the resumed export's parts differ from the undisturbed export's: "
            f"{[name for name, _ in killed_parts]} vs {[name for name, _ in reference_parts]}",
        )
        users = sum(data.count(b"\n") for _, data in killed_parts)
        _require(users == len(self.emulator.user_ids()), f"{users} users in the parts")
        leftovers = self._uploads(f"{run.folder}/killed")
        _require(not leftovers, f"incomplete uploads left after the retry: {leftovers}")
        finished = next(t.end for t in tasks if t.task_id == "export")
        self._report(
            "1 task process killed mid-export",
            Outcome(
                recovered_s=(finished - _utc(run.killed_at)).total_seconds() if finished else math.nan,
                pages_twice=len(refetched),
                records_again=0,
                tries=str(len(tries)),
            ),
            f"killed pid {run.pid} on {run.worker} after {len(killed_pages)} pages ({parts_at_kill} parts "
            f"checkpointed); retry on {tries[1].hostname} resumed at page {retry_pages[0]}, fetched "
            f"{len(retry_pages)} pages; {len(killed_parts)} parts equal to the undisturbed export's; "
            "no incomplete upload left on S3",
        )

    def _checkpoint(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any] | None:
        """The export's checkpoint as the metadata database holds it, once it has one."""
        rows = self.postgres.query(
            "SELECT value FROM task_state_store WHERE dag_id = %s AND run_id = %s AND task_id = %s"
            " AND key = 'kumulos_export_checkpoint'",
            (dag_id, run_id, task_id),
        )
        if not rows:
            return None
        value: Any = rows[0][0]
        while isinstance(value, str):
            value = json.loads(value)
        return value if isinstance(value, dict) and value.get("parts") else None

    def _parts(self, folder: str) -> list[tuple[str, bytes]]:
        """The part files the folder's manifest lists, with their bytes, in manifest order."""
        manifest = json.loads(self.reader.read(f"{folder}/_manifest.json"))
        return [
            (part["name"], self.reader.read(f"{folder}/{part['name']}").encode())
            for part in manifest["parts"]
        ]

    # -- 2. a whole Celery worker lost mid bulk write -------------------------------------------

    def worker_lost(self, with_state: bool) -> Service:
        """SIGKILL a Celery worker (with its task) mid bulk write: the scheduler notices the missing
        heartbeat in seconds, the retry runs on the other worker, every user ends as intended.

        ``with_state``: the write keeps a sync state saved every few seconds, and the retry sends
        again exactly what the killed try sent after its last checkpoint; otherwise it reconciles.
        Returns the lost worker, so that it can be started again."""
        dag_id = "kumulos_e2e_bulk_worker_lost_sync" if with_state else "kumulos_e2e_bulk_worker_lost"
        variant = "sync" if with_state else "reconcile"
        intended = {
            f"e2e-bulk-{self.tag}-{variant}-{number:05d}": {"chaos": "worker-lost", "n": number}
            for number in range(BULK_RECORDS)
        }
        source_key = f"chaos/{self.tag}/bulk-{variant}/updates.jsonl"
        self.reader.s3.put_object(
            Bucket=self.bucket,
            Key=source_key,
            Body="".join(
                json.dumps({"identifier": ident, "attributes": attrs}) + "\n"
                for ident, attrs in intended.items()
            ).encode(),
        )
        failures = self._folder(f"bulk-{variant}/failures.jsonl")
        state_key = f"chaos/{self.tag}/bulk-{variant}/state.sqlite"
        conf = {"source": f"s3://aws_default@{self.bucket}/{source_key}", "failures": failures}
        if with_state:
            conf["state"] = f"s3://aws_default@{self.bucket}/{state_key}"
        run_id = self._start(dag_id, conf, latency=0.005)
        task = wait_for(
            "the bulk write to run",
            lambda: self._running(dag_id, run_id, "set_attributes"),
            timeout=120,
            services=self.services,
            interval=0.2,
        )
        wait_for(
            "a fifth of the writes" + (" and a checkpoint of the sync state" if with_state else ""),
            lambda: (
                True
                if self._puts() >= BULK_RECORDS // 5
                and (not with_state or state_key in self._keys(self._folder(f"bulk-{variant}")))
                else None
            ),
            timeout=120,
            interval=0.1,
        )
        worker = self._worker_of(task.pid or 0)
        lost = self.services.get(worker)
        killed = self.services.kill(lost)
        killed_at, killed_wall = time.monotonic(), time.time()
        _require((task.pid or 0) in killed, f"task process {task.pid} was not among the killed {killed}")
        checkpointed = self._synced(state_key) if with_state else set()
        detected = wait_for(
            "the scheduler to notice the lost task",
            lambda: self._left_running(dag_id, run_id, "set_attributes"),
            timeout=120,
            interval=0.5,
        )
        detected_s = detected - killed_at
        retry = wait_for(
            "the retry to run",
            lambda: self._running(dag_id, run_id, "set_attributes", try_number=2),
            timeout=120,
            services=self.services,
            interval=0.5,
        )
        _require(retry.hostname != worker, f"the retry ran on the lost worker {worker}")
        self._finish(dag_id, run_id)
        recovered_s = time.monotonic() - killed_at
        summary = self.api.xcom(dag_id, run_id, "set_attributes")
        fed_back = 0
        if summary["failed"] or self._keys(failures):
            fed_back = summary["failed"]
            self.checks.finish(
                dag_id, self.api.trigger(dag_id, {**conf, "source": failures, "failures": failures}), 0
            )
        actual = self.emulator.attributes_by_user(*self.keys)
        wrong = [ident for ident, attrs in intended.items() if actual.get(ident) != attrs]
        _require(not wrong, f"{len(wrong)} users not in their intended state, e.g. {wrong[:3]}")
        entries = [
            e
            for e in self.emulator.requests()
            if e["method"] == "PUT" and e["status"] == 200 and e["identifier"] in intended
        ]
        puts = Counter(e["identifier"] for e in entries)
        killed_try = {e["identifier"] for e in entries if e["timestamp"] < killed_wall}
        tries = self.api.tries(dag_id, run_id, "set_attributes")
        again = {ident for ident, count in puts.items() if count > 1}
        if with_state:
            # What the last checkpoint holds is not sent again; what the killed try sent after it is.
            _require(
                again == killed_try - checkpointed,
                f"{len(again)} records sent again; the killed try sent {len(killed_try)}, of which the "
                f"last checkpoint held {len(checkpointed & killed_try)}",
            )
            _require(len(again) < len(killed_try), "the retry sent again everything the killed try sent")
            how = (
                f"sync state checkpointed every {CHECKPOINT_INTERVAL:g}s: the last checkpoint before the "
                f"kill held {len(checkpointed):,} users, so {len(again):,} of the {len(killed_try):,} "
                f"records the killed try sent were sent again (without checkpoints: all {len(killed_try):,}); "
                f"retry: {summary['unchanged']} unchanged, {summary['succeeded']} sent"
            )
        else:
            # reconcile=True: the retry reads what Kumulos holds first, so what the killed try wrote
            # is not sent again (at most the writes it had in flight, max_concurrency=4).
            _require(
                len(again) <= 4, f"{len(again)} records sent again after the loss, despite reconcile=True"
            )
            how = f"reconciling: {summary['unchanged']} users found as intended, {summary['succeeded']} sent"
        self._report(
            f"2{'a' if with_state else 'b'} Celery worker lost mid bulk write ({variant})",
            Outcome(recovered_s=recovered_s, pages_twice=0, records_again=len(again), tries=str(len(tries))),
            f"killed {worker} ({len(killed)} processes) after {len(killed_try)} of {BULK_RECORDS} "
            f"writes; loss noticed after {detected_s:.1f}s (heartbeat timeout "
            f"{AIRFLOW_SETTINGS['AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT']}s); retry on "
            f"{retry.hostname}, {how}; {BULK_RECORDS} users as intended; {summary['failed']} failed "
            f"records ({fed_back} fed back from the failures file)",
        )
        return lost

    def _synced(self, key: str) -> set[str]:
        """Identifiers a sync state object in the bucket records as sent (its users with a digest)."""
        body = self.reader.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, "state.sqlite")
            with open(local, "wb") as file:
                file.write(body)
            with contextlib.closing(sqlite3.connect(local)) as db:
                rows = db.execute("SELECT identifier FROM users WHERE digest IS NOT NULL").fetchall()
        return {identifier for (identifier,) in rows}

    def _puts(self) -> int:
        """PUTs answered since :meth:`prepare` emptied the request log (and its counters)."""
        return sum(
            count for key, count in self.emulator.stats()["requests"].items() if key.startswith("PUT ")
        )

    def _left_running(self, dag_id: str, run_id: str, task_id: str) -> float | None:
        """When the task instance is seen out of ``running`` (the scheduler noticed the loss)."""
        task = self.api.task_run(dag_id, run_id, task_id)
        return time.monotonic() if task.state != "running" or task.try_number > 1 else None

    # -- 3. triggerer restarted while the sensor is deferred -----------------------------------

    def restart_begin(self) -> _Restarted:
        """Start an onboarding run for a user that does not exist yet."""
        user_id = f"e2e-restart-{self.tag}"
        return _Restarted(self.api.trigger(RESTART_DAG, {"user_id": user_id}), user_id)

    def restart_fault(self, run: _Restarted) -> None:
        """Stop the triggerer under the deferred sensor, start it again, and wait until the new one
        has rebuilt the trigger from the database and polled."""
        sensor = wait_for(
            "the sensor to be deferred and claimed by the triggerer",
            lambda: self._claimed(run.run_id, exclude=None),
            timeout=120,
            services=self.services,
        )
        wait_for(
            "the triggerer to poll", lambda: True if self._misses(run.user_id) >= 2 else None, timeout=60
        )
        stopped = self.deployment.stop_component("triggerer")
        stopped_at = time.monotonic()
        _require(
            self.api.task_run(RESTART_DAG, run.run_id, "wait_for_user").state == "deferred",
            "the sensor left the deferred state when the triggerer stopped",
        )
        misses_before = self._misses(run.user_id)
        self.deployment.start_again(stopped, "triggerer-restarted", "triggerer")
        reclaimed = wait_for(
            "the trigger to be claimed by the new triggerer",
            lambda: self._claimed(run.run_id, exclude=sensor.triggerer_id),
            timeout=120,
            services=self.services,
        )
        wait_for(
            "the new triggerer to poll",
            lambda: True if self._misses(run.user_id) > misses_before else None,
            timeout=60,
        )
        run.recovered_s = time.monotonic() - stopped_at
        run.moved = (sensor.triggerer_id, reclaimed.triggerer_id)

    def restart_finish(self, run: _Restarted) -> None:
        """Create the user: the sensor completes and each downstream task runs exactly once."""
        self.emulator.add_user(run.user_id, {"source": "e2e-restart", **person("restart")})
        tasks = self._finish(RESTART_DAG, run.run_id)
        writes = [
            (e["method"], e["status"])
            for e in self.emulator.requests()
            if e.get("identifier") == run.user_id and e["method"] in ("PUT", "DELETE")
        ]
        _require(writes == [("PUT", 200), ("DELETE", 204)], f"downstream writes for {run.user_id}: {writes}")
        tries = {t.task_id: len(self.api.tries(RESTART_DAG, run.run_id, t.task_id)) for t in tasks}
        _require(all(count == 1 for count in tries.values()), f"tasks ran more than once: {tries}")
        self._report(
            "3 triggerer restarted under a deferred sensor",
            Outcome(
                recovered_s=run.recovered_s,
                pages_twice=0,
                records_again=0,
                tries=", ".join(f"{task} {count}" for task, count in tries.items()),
            ),
            f"trigger moved from triggerer {run.moved[0]} to {run.moved[1]}; "
            f"{self._misses(run.user_id)} lookups answered 404 before the user existed; one PUT, one DELETE",
        )

    def _claimed(self, run_id: str, exclude: int | None) -> TaskRun | None:
        sensor = self.api.task_run(RESTART_DAG, run_id, "wait_for_user")
        if sensor.state in ("failed", "upstream_failed", "up_for_retry", "success"):
            raise DeploymentError(f"the sensor is {sensor.state} while its user does not exist")
        claimed = sensor.state == "deferred" and sensor.triggerer_id is not None
        return sensor if claimed and sensor.triggerer_id != exclude else None

    def _misses(self, user_id: str) -> int:
        return sum(
            1
            for e in self.emulator.requests()
            if e.get("identifier") == user_id and e["method"] == "GET" and e["status"] == 404
        )

    # -- 6. triggerer SIGKILLed under deferred sensors -----------------------------------------

    def triggerer_killed(self) -> None:
        """SIGKILL the triggerer holding deferred sensors while a second one runs: once the first one's
        heartbeat is older than ``[triggerer] triggerer_health_check_threshold`` the second takes its
        triggers over, and every sensor then completes on its first try."""
        prefix = f"e2e-trigkill-{self.tag}"
        user_ids = [f"{prefix}-{number:03d}" for number in range(KILLED_SENSORS)]
        run_id = self._start(BURST_DAG, {"prefix": prefix, "count": KILLED_SENSORS}, latency=0.0)
        holders = wait_for(
            f"all {KILLED_SENSORS} sensors to be deferred and claimed",
            lambda: self._sensor_holders(run_id),
            timeout=300,
            services=self.services,
            interval=1.0,
        )
        _require(len(holders) == 1, f"the sensors' triggers are held by several triggerers: {holders}")
        [old_id] = holders
        wait_for(
            "the triggerer to poll for every user",
            lambda: True if all(n >= 2 for n in self._misses_of(user_ids).values()) else None,
            timeout=120,
            interval=1.0,
        )
        old = next(s for s in self.services.services if s.name.startswith("triggerer"))
        self.services.start("triggerer-standby", old.argv, old.env)
        standby_id = wait_for(
            "the standby triggerer to heartbeat", lambda: self._live_triggerer(newer_than=old_id), timeout=180
        )
        _require(
            self._sensor_holders(run_id) == {old_id},
            "the standby took triggers while the first triggerer lived",
        )
        killed = self.services.kill(old)
        killed_at, killed_wall = time.monotonic(), time.time()
        last_beat = self._heartbeat(old_id)
        misses_at_kill = self._misses_of(user_ids)
        moved = wait_for(
            "the standby triggerer to take the triggers over",
            lambda: True if self._sensor_holders(run_id) == {standby_id} else None,
            timeout=180,
            services=self.services,
            interval=0.5,
        )
        taken_s = time.monotonic() - killed_at if moved else math.nan
        wait_for(
            "every trigger to poll again",
            lambda: (
                True
                if all(self._misses_of(user_ids)[user] > misses_at_kill[user] for user in user_ids)
                else None
            ),
            timeout=120,
            interval=0.5,
        )
        recovered_s = time.monotonic() - killed_at
        for user_id in user_ids:
            self.emulator.add_user(user_id, {"source": "e2e-triggerer-killed"})
        self._finish(BURST_DAG, run_id)
        sensors = [t for t in self.api.task_runs(BURST_DAG, run_id) if t.task_id == "wait_for_user"]
        _require(
            len(sensors) == KILLED_SENSORS
            and all(t.state == "success" and t.try_number == 1 for t in sensors),
            f"sensors: {[(t.label, t.state, t.try_number) for t in sensors]}",
        )
        silent_s = killed_wall - last_beat
        self._report(
            "6 triggerer SIGKILLed under deferred sensors",
            Outcome(
                recovered_s=recovered_s,
                pages_twice=0,
                records_again=0,
                tries=f"1 for each of the {KILLED_SENSORS} sensors",
            ),
            f"killed triggerer {old_id} ({len(killed)} processes) {silent_s:.1f}s after its last heartbeat; "
            f"triggerer {standby_id} took all {KILLED_SENSORS} triggers over {taken_s:.1f}s after the kill "
            f"({silent_s + taken_s:.1f}s after the last heartbeat: [triggerer] "
            f"triggerer_health_check_threshold {TRIGGERER_THRESHOLD:g}s, heartbeat every "
            f"job_heartbeat_sec {TRIGGERER_HEARTBEAT:g}s); every trigger polled again {recovered_s:.1f}s "
            f"after the kill; all sensors succeeded once their users existed",
        )

    def _sensor_holders(self, run_id: str) -> set[int] | None:
        """The triggerer ids holding the burst run's sensors, once every sensor is deferred and claimed."""
        sensors = [t for t in self.api.task_runs(BURST_DAG, run_id) if t.task_id == "wait_for_user"]
        ended = [
            t.label for t in sensors if t.state in ("failed", "upstream_failed", "up_for_retry", "success")
        ]
        if ended:
            raise DeploymentError(f"sensors ended while their users did not exist: {ended}")
        holders = {t.triggerer_id for t in sensors if t.state == "deferred"}
        if len(sensors) < KILLED_SENSORS or any(t.state != "deferred" for t in sensors) or None in holders:
            return None
        return {holder for holder in holders if holder is not None}

    def _live_triggerer(self, newer_than: int) -> int | None:
        """The id of a triggerer job started after ``newer_than`` that has heartbeat in the last 10 s."""
        rows = self.postgres.query(
            "SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running' AND id > %s"
            " AND latest_heartbeat > now() - interval '10 seconds' ORDER BY id DESC LIMIT 1",
            (newer_than,),
        )
        return int(str(rows[0][0])) if rows else None

    def _heartbeat(self, job_id: int) -> float:
        """When the job last heartbeat, as a Unix time."""
        [(beat,)] = self.postgres.query("SELECT latest_heartbeat FROM job WHERE id = %s", (job_id,))
        if not isinstance(beat, datetime):
            raise DeploymentError(f"job {job_id} has no heartbeat: {beat!r}")
        return (beat if beat.tzinfo else beat.replace(tzinfo=timezone.utc)).timestamp()

    def _misses_of(self, user_ids: list[str]) -> Counter[str]:
        """Lookups per user answered 404."""
        wanted = set(user_ids)
        return Counter(
            e["identifier"]
            for e in self.emulator.requests()
            if e.get("identifier") in wanted and e["method"] == "GET" and e["status"] == 404
        )

    # -- 4. scheduler restarted during the parallel export -------------------------------------

    def scheduler_restart(self) -> None:
        """Restart the scheduler while the partitions run: the run completes and the manifest
        covers every user exactly once."""
        dag_id = "kumulos_parallel_export"
        users = len(self.emulator.user_ids())
        page_size = math.ceil(users / 16)  # 16 pages: 4 partitions of 4
        run_id = self._start(dag_id, {"partitions": 4, "page_size": page_size}, latency=0.25)
        wait_for(
            "a partition to run",
            lambda: (
                True
                if any(
                    t.task_id == "export_partition" and t.state == "running"
                    for t in self.api.task_runs(dag_id, run_id)
                )
                else None
            ),
            timeout=180,
            services=self.services,
            interval=0.3,
        )
        name = next(s.name for s in self.services.services if s.name.startswith("scheduler"))
        running_at_stop = [
            t.label for t in self.api.task_runs(dag_id, run_id) if t.state in ("running", "queued")
        ]
        _require(bool(running_at_stop), "every partition had finished before the scheduler was stopped")
        stopped = self.deployment.stop_component(name)
        stopped_at = time.monotonic()
        self.deployment.start_again(stopped, "scheduler-restarted", "scheduler")
        recovered_s = time.monotonic() - stopped_at
        tasks = self._finish(dag_id, run_id)
        summary = self.api.xcom(dag_id, run_id, "write_manifest")
        _require(
            summary["cross_partition_duplicates"] == 0 and not summary["page_gaps"],
            f"manifest reports duplicates/gaps: {summary}",
        )
        manifest = json.loads(self.reader.read(summary["manifest"]))
        files = [file["path"] for partition in manifest["partitions"] for file in partition["files"]]
        exported = self.checks.covers_every_user_once(files)
        pages = _pages(self.emulator.requests(), page_size)
        tries = Counter(t.try_number for t in tasks)
        self._report(
            "4 scheduler restarted during the parallel export",
            Outcome(
                recovered_s=recovered_s,
                pages_twice=_twice(pages),
                records_again=0,
                tries=", ".join(f"{count} task(s) x {number}" for number, count in sorted(tries.items())),
            ),
            f"{name} stopped with {running_at_stop} running or queued; manifest covers {exported} users "
            f"exactly once in {len(files)} files",
        )

    # -- 5. API outage during an export ----------------------------------------------------------

    def api_outage(self) -> None:
        """Every request answered 503 for 30 s mid-export: the task fails typed and a retry after the
        outage publishes the complete file; nothing is published before."""
        dag_id, folder = "kumulos_e2e_export_outage", self._folder("outage")
        target = f"{folder}/users.jsonl"
        run_id = self._start(dag_id, {"folder": folder}, latency=0.2)
        wait_for(
            "the export to be under way",
            lambda: True if len(_pages(self.emulator.requests(), PAGE_SIZE)) >= 5 else None,
            timeout=120,
            services=self.services,
            interval=0.1,
        )
        self.emulator.start_outage(OUTAGE_SECONDS)
        began = time.monotonic()
        published_early: list[str] = []
        while time.monotonic() - began < OUTAGE_SECONDS:
            published_early += [key for key in self._keys(folder) if key.endswith("/users.jsonl")]
            time.sleep(1.0)
        ended = time.monotonic()
        tasks = self._finish(dag_id, run_id)
        recovered_s = time.monotonic() - ended
        _require(not published_early, f"the file was published during the outage: {published_early}")
        self.checks.covers_every_user_once([target])
        leftovers = [key for key in self._keys(folder) if not key.endswith("/users.jsonl")]
        _require(not leftovers, f"objects left beside the export: {leftovers}")
        unfinished = self._uploads(folder)
        _require(not unfinished, f"incomplete uploads left by the failed tries: {unfinished}")
        tries = self.api.tries(dag_id, run_id, "export")
        failed = [t for t in tries if t.state != "success"]
        untyped = [
            t.try_number
            for t in failed
            if not any(
                name in self.api.task_log(dag_id, run_id, "export", t.try_number) for name in TYPED_ERRORS
            )
        ]
        _require(not untyped, f"tries {untyped} did not fail with a typed Kumulos error")
        entries = self.emulator.requests()
        refused = sum(1 for e in entries if e["fault"] == "status" and e["status"] == 503)
        _require(refused > 0, "no request met the outage")
        pages = _pages(entries, PAGE_SIZE)
        task = next(t for t in tasks if t.task_id == "export")
        self._report(
            "5 API outage (503 for 30 s) mid-export",
            Outcome(
                recovered_s=recovered_s,
                pages_twice=_twice(pages),
                records_again=0,
                tries=str(task.try_number),
            ),
            f"{refused} requests answered 503 during the outage; {len(failed)} tries failed with a typed "
            f"error; nothing at {target} until the successful try; no temporaries or incomplete uploads left",
        )


#: Scenario names ``run_all`` takes (``--scenarios``, ``KUMULOS_E2E_SCENARIOS``), in running order.
SCENARIOS = ("1", "3", "6", "4", "5", "2a", "2b")


def run_all(chaos: Chaos, phase: Callable[[str], Any], only: Iterable[str] = SCENARIOS) -> None:
    """The scenarios named in ``only`` (all by default); 1 and 3 run side by side (they disturb
    different components and their requests are told apart in the log), the worker is lost last
    (2a starts it again; after 2b the run ends on one worker)."""
    wanted = set(only)
    if "1" in wanted or "3" in wanted:
        with phase("chaos 1 + 3: task process killed, triggerer restarted"):
            chaos.prepare(latency=0.3, dags=(KILL_DAG, RESTART_DAG))
            killed = chaos.kill_begin() if "1" in wanted else None
            restarted = chaos.restart_begin() if "3" in wanted else None
            if killed is not None:
                chaos.kill_fault(killed)
            if restarted is not None:
                chaos.restart_fault(restarted)
            if killed is not None:
                chaos.kill_finish(killed)
            if restarted is not None:
                chaos.restart_finish(restarted)
    for key, name, scenario in (
        ("6", "chaos 6: triggerer SIGKILLed under deferred sensors", chaos.triggerer_killed),
        ("4", "chaos 4: scheduler restart", chaos.scheduler_restart),
        ("5", "chaos 5: API outage", chaos.api_outage),
    ):
        if key in wanted:
            with phase(name):
                scenario()
    if "2a" in wanted:
        with phase("chaos 2a: Celery worker lost, sync state"):
            lost = chaos.worker_lost(with_state=True)
            chaos.deployment.restart_worker(lost)
    if "2b" in wanted:
        with phase("chaos 2b: Celery worker lost, reconcile"):
            chaos.worker_lost(with_state=False)
    chaos.emulator.clear_faults()
