"""Helpers shared by the attribute-operator tests: run an operator outside a DAG run, read JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run(op: Any) -> dict[str, Any]:
    """Execute ``op`` with a task instance that drops XCom pushes; return its summary."""

    class TaskInstance:
        def xcom_push(self, key: str, value: Any) -> None:
            pass

    return op.execute({"ti": TaskInstance()})


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON Lines file, decoded."""
    return [json.loads(line) for line in path.read_text().splitlines()]
