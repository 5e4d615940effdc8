"""DAG files import the hook, operator and sensor modules at parse time: that must not pull in heavy libraries.

Each check runs in a fresh interpreter and compares against ``import airflow.sdk`` alone, so only what our
module adds counts (Airflow itself already brings some of these libraries on some releases).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("requests", "tenacity", "msgspec", "httpx", "fsspec", "pyarrow", "boto3", "s3fs")

_PROBE = """
import json, sys
import airflow.sdk
before = set(sys.modules)
import {module}
added = {{name.partition(".")[0] for name in set(sys.modules) - before}}
print(json.dumps(sorted(added & set({heavy!r}))))
"""


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_kumulos.hooks.kumulos",
        "airflow_provider_kumulos.operators.kumulos",
        "airflow_provider_kumulos.sensors.kumulos",
    ],
)
def test_importing_public_modules_adds_no_heavy_library(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_probe_detects_a_heavy_import() -> None:
    code = _PROBE.format(module="pyarrow.parquet", heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["pyarrow"]
