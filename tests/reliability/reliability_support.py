"""Shared pieces of the reliability scenarios: the fault mix, the figures collector, small measurements.

Each scenario records its figures (faults injected, retries made, records checked, duration) in a
:class:`Figures` collector; ``conftest.py`` prints them at the end of the run and appends them to a
JSON file (``$KUMULOS_RELIABILITY_FIGURES``, default ``build/reliability-figures.json``).
"""

from __future__ import annotations

import json
import os
import platform
import time
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
        return round(time.monotonic() - self.started, 2)


def injected(emulator: KumulosEmulator) -> dict[str, int]:
    """Faults the emulator injected so far, by kind (``status`` = 5xx or 429 answers)."""
    return dict(emulator.stats()["faults"])


def answered(emulator: KumulosEmulator) -> dict[str, int]:
    """Requests the emulator received, by ``"METHOD STATUS"`` (``dropped`` when unanswered)."""
    return dict(emulator.stats()["requests"])
