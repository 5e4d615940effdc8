"""Airflow's public REST API (v2) as a deployment user sees it: JWT login, unpause, trigger, read back."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from e2e_procs import DeploymentError

TERMINAL_RUN_STATES = {"success", "failed"}


@dataclass(frozen=True)
class TaskRun:
    """One task instance as the API reports it, with its wall-clock interval."""

    task_id: str
    map_index: int
    state: str | None
    start: datetime | None
    end: datetime | None
    pid: int | None
    hostname: str | None
    trigger_classpath: str | None = None
    triggerer_id: int | None = None
    try_number: int = 0

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> TaskRun:
        return cls(
            task_id=item["task_id"],
            map_index=item["map_index"],
            state=item["state"],
            start=_parse_time(item.get("start_date")),
            end=_parse_time(item.get("end_date")),
            pid=item.get("pid"),
            hostname=item.get("hostname"),
            trigger_classpath=(item.get("trigger") or {}).get("classpath"),
            triggerer_id=(item.get("trigger") or {}).get("triggerer_id"),
            try_number=item.get("try_number") or 0,
        )


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


class AirflowAPI:
    """A logged-in client of ``/api/v2``: the token comes from the simple auth manager's ``/auth/token``."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.client = httpx.Client(base_url=self.base_url, timeout=30.0, trust_env=False)

    def login(self) -> None:
        """Exchange the user name and password for a JWT and send it on every later request."""
        response = self.client.post(
            "/auth/token", json={"username": self.username, "password": self._password}
        )
        if response.status_code != 201:
            raise DeploymentError(f"login as {self.username!r} failed: HTTP {response.status_code}")
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def login_rejected(self, password: str) -> bool:
        """True when ``/auth/token`` refuses ``password`` (proves authentication is really on)."""
        response = self.client.post("/auth/token", json={"username": self.username, "password": password})
        return response.status_code == 401

    def anonymous_status(self, path: str) -> int:
        """HTTP status of an unauthenticated GET of ``path``."""
        return httpx.get(f"{self.base_url}{path}", timeout=30.0, trust_env=False).status_code

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise DeploymentError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.client.get(f"/api/v2/dags/{quote(dag_id)}")
        return response.json() if response.status_code == 200 else None

    def import_errors(self) -> list[dict[str, Any]]:
        errors: list[dict[str, Any]] = self._json("GET", "/api/v2/importErrors")["import_errors"]
        return errors

    def unpause(self, dag_id: str) -> None:
        body = self._json("PATCH", f"/api/v2/dags/{quote(dag_id)}", json={"is_paused": False})
        if body["is_paused"]:
            raise DeploymentError(f"DAG {dag_id} is still paused after PATCH is_paused=false")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a manual run now; returns its run id."""
        run_id = f"e2e__{dag_id}__{uuid.uuid4().hex[:8]}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        created = self._json("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns", json=body)
        return str(created["dag_run_id"])

    def run_ids(self, dag_id: str, run_type: str) -> list[str]:
        """Ids of the DAG's runs of one type (``scheduled``, ``manual``, ...)."""
        body = self._json("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns", params={"run_type": run_type})
        return [str(run["dag_run_id"]) for run in body["dag_runs"]]

    def run_conf(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """The conf the run was triggered with."""
        return dict(self._json("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}")["conf"] or {})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self._json("GET", f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}")["state"])

    def task_runs(self, dag_id: str, run_id: str) -> list[TaskRun]:
        body = self._json(
            "GET",
            f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances",
            params={"limit": 100},
        )
        return [TaskRun.from_api(item) for item in body["task_instances"]]

    def task_states(self, dag_id: str, run_id: str, task_id: str) -> Counter[str]:
        """How many instances of one (mapped) task are in each state, over every page of the list."""
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances"
        states: Counter[str] = Counter()
        offset = 0
        while True:
            body = self._json("GET", path, params={"task_id": task_id, "limit": 100, "offset": offset})
            states.update(str(item["state"]) for item in body["task_instances"])
            offset += len(body["task_instances"])
            if not body["task_instances"] or offset >= body["total_entries"]:
                return states

    def task_run(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> TaskRun:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
        return TaskRun.from_api(self._json("GET", path if map_index < 0 else f"{path}/{map_index}"))

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[TaskRun]:
        """Every try of one task instance (finished tries from the history, then the current one)."""
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
        body = self._json("GET", f"{path}/tries" if map_index < 0 else f"{path}/{map_index}/tries")
        return sorted(
            (TaskRun.from_api(item) for item in body["task_instances"]), key=lambda run: run.try_number
        )

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """One try's whole task log as text (the API's structured lines, one per line)."""
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
        body = self._json(
            "GET",
            f"{path}/logs/{try_number}",
            params={"full_content": "true", "map_index": map_index},
            headers={"Accept": "application/json"},
        )
        content = body.get("content")
        if isinstance(content, list):
            return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in content)
        return str(content)

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id)}/taskInstances/{quote(task_id)}"
        return self._json("GET", f"{path}/xcomEntries/{quote(key)}", params={"map_index": map_index})["value"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float, check_alive: Any = None) -> str:
        """Poll until the run is finished; returns ``success`` or ``failed``, raises after ``timeout``.

        A poll the api-server does not answer in time is polled again: its one worker can be busy
        for longer than the client's timeout (on a loaded machine the first task start of a run
        took 36 s), while the run itself goes on.
        """
        deadline = time.monotonic() + timeout
        while True:
            if check_alive is not None:
                check_alive()
            try:
                state = self.run_state(dag_id, run_id)
            except httpx.TimeoutException:
                state = "unknown (the api-server did not answer in time)"
            if state in TERMINAL_RUN_STATES:
                return state
            if time.monotonic() >= deadline:
                raise DeploymentError(f"{dag_id} run {run_id} still {state!r} after {timeout:.0f}s")
            time.sleep(1.0)

    def close(self) -> None:
        self.client.close()
