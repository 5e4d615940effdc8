"""Shared pieces of the reliability scenarios: the fault mix, the figures collector, small measurements.

Each scenario records its figures (faults injected, retries made, records checked, duration) in a
:class:`Figures` collector; ``conftest.py`` prints them at the end of the run and appends them to a
JSON file (``$KUMULOS_RELIABILITY_FIGURES``, default ``build/reliability-figures.json``).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIGURES_ENV = "KUMULOS_RELIABILITY_FIGURES"
DEFAULT_FIGURES_PATH = PROJECT_ROOT / "build" / "reliability-figures.json"

#: The production-like fault mix of scenarios 1 and 2, as probabilities per API request: 10% 5xx,
#: 5% 429 with ``Retry-After: 1``, 2% dropped connections, 1% answers slower than the read timeout.
FLAKY_RATES: dict[str, Any] = {
    "error_5xx": 0.10,
    "rate_limit": 0.05,
    "drop": 0.02,
    "slow": 0.01,
    "retry_after": 1,
    "slow_seconds": 1.0,
}
#: Connection extras that keep those faults cheap to survive: a 0.5 s read timeout (below
#: ``slow_seconds``), short jittered backoff, and ``Retry-After`` capped at 0.05 s.
FAST_EXTRAS: dict[str, Any] = {
    "timeout": 0.5,
    "backoff_base": 0.01,
    "backoff_max": 0.1,
    "max_retry_after": 0.05,
}


#: Start of a DAG file: ``recorded(OperatorClass)`` gives a subclass that appends one JSON line per
#: failed task to ``{failures}`` (task, error class, ``str``, ``repr``, ``to_dict()``, cause). A failure
#: callback cannot do this on every supported Airflow: 3.1 hands it no exception.
RECORDING_PRELUDE = """
import json

from airflow_provider_kumulos.exceptions import KumulosError


def _record(task_id, error):
    row = {{"task": task_id, "type": type(error).__name__, "str": str(error), "repr": repr(error)}}
    if isinstance(error, KumulosError):
        row["dict"] = error.to_dict()
    if error.__cause__ is not None:
        row["cause"] = repr(error.__cause__)
    with open({failures!r}, "a") as out:
        out.write(json.dumps(row, default=str) + "\\n")


def recorded(operator_class):
    class Recorded(operator_class):
        def execute(self, context):
            try:
                return super().execute(context)
            except Exception as error:  # TaskDeferred is a BaseException: deferring passes through
                _record(self.task_id, error)
                raise

        def execute_complete(self, context, event=None):
            try:
                return super().execute_complete(context, event)
            except Exception as error:
                _record(self.task_id, error)
                raise

    Recorded.__name__ = Recorded.__qualname__ = operator_class.__name__
    return Recorded
"""


#: DAG source after the prelude: imports and recorded versions of every operator and the sensor
#: (``Export``, ``Set``, ``Delete``, ``Sensor``), for scenarios that drive them all. No braces:
#: scenarios append their DAG body and ``format`` the whole.
RECORDED_OPERATORS = """
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_kumulos.operators.kumulos import (
    DeleteAttributesOperator,
    ExportUsersOperator,
    SetAttributesOperator,
)
from airflow_provider_kumulos.sensors.kumulos import KumulosUserSensor

Export, Set, Delete = map(recorded, (ExportUsersOperator, SetAttributesOperator, DeleteAttributesOperator))
Sensor = recorded(KumulosUserSensor)
"""


def recording_dag(failures: Path, body: str) -> str:
    """DAG source: the recording prelude writing to ``failures``, then ``body``."""
    return RECORDING_PRELUDE.format(failures=str(failures)) + body


def failed_tasks(failures: Path) -> dict[str, dict[str, Any]]:
    """``task_id -> recorded failure`` from a file the recording prelude wrote (empty if none)."""
    if not failures.exists():
        return {}
    return {row["task"]: row for row in map(json.loads, failures.read_text().splitlines())}


class Figures:
    """What each scenario measured, by scenario name, in the order recorded."""

    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def record(self, scenario: str, **figures: Any) -> None:
        """Add (or extend) the figures of ``scenario``; values must be JSON-serialisable."""
        self.scenarios.setdefault(scenario, {}).update(figures)

    def lines(self) -> list[str]:
        """One line per scenario, for the terminal summary."""
        return [
            f"{scenario}: " + ", ".join(f"{key}={_compact(value)}" for key, value in figures.items())
            for scenario, figures in self.scenarios.items()
        ]

    def append_to(self, path: Path, exit_status: int) -> None:
        """Append this run to the JSON list at ``path`` (created if missing or unreadable)."""
        from airflow import __version__ as airflow_version

        runs: list[Any] = []
        if path.exists():
            try:
                loaded = json.loads(path.read_text())
                runs = loaded if isinstance(loaded, list) else []
            except ValueError:
                runs = []
        runs.append(
            {
                "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "airflow": airflow_version,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "exit_status": exit_status,
                "scenarios": self.scenarios,
            }
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(runs, indent=2, sort_keys=False) + "\n")


def _compact(value: Any) -> str:
    """A figure as the terminal summary shows it."""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_compact(item)}" for key, item in value.items()) + "}"
    return str(value)


class Stopwatch:
    """Seconds since creation, for the ``duration_s`` figure."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        """Elapsed seconds, rounded to hundredths."""
        return round(time.monotonic() - self.started, 2)


def has_task_state_store() -> bool:
    """Whether this Airflow gives tasks ``context["task_state_store"]`` (3.3+), which export resume needs."""
    try:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor  # noqa: F401
    except ImportError:
        return False
    return True


def fault_breakdown(emulator: KumulosEmulator) -> dict[str, int]:
    """Faults the emulator injected, by kind: 5xx and 429 answers, dropped connections (answer lost),
    answers slower than the client waited (``slow``)."""
    stats = emulator.stats()
    statuses: Counter[str] = Counter()
    for key, count in stats["requests"].items():  # "METHOD STATUS", STATUS "dropped" when unanswered
        statuses[key.split()[1]] += count
    return {
        "5xx": sum(count for status, count in statuses.items() if status.startswith("5")),
        "429": statuses["429"],
        "dropped": statuses["dropped"],
        "slow": stats["faults"].get("slow", 0),
    }


def appear_after_first_look(
    emulator: KumulosEmulator, user_id: str, attributes: dict[str, Any]
) -> threading.Thread:
    """Give ``user_id`` these attributes a second after its first request, from another thread (as the
    app would): a sensor looking for it finds nothing at first and so defers."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while not any(entry.identifier == user_id for entry in emulator.requests):
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        time.sleep(1.0)
        emulator.set_attributes(user_id, attributes)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
