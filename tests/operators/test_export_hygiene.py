"""Cheap imports, no secrets or user data in logs and summaries, progress lines on a time cadence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_export_support import run_export

from airflow_provider_kumulos.exceptions import KumulosAuthError
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator

HEAVY = ("requests", "tenacity", "msgspec", "pyarrow", "fsspec", "s3fs", "httpx")


def test_importing_the_operator_module_imports_nothing_heavy() -> None:
    script = f"""
import sys
import airflow.sdk
before = set(sys.modules)
import airflow_provider_kumulos.operators.export
import airflow_provider_kumulos.operators.kumulos
added = set(sys.modules) - before
print([name for name in added if name.split(".")[0] in {HEAVY!r}])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_progress_lines_and_summary_carry_no_user_data(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_export(output_path=str(tmp_path / "u.jsonl"), page_size=10, progress_interval=0)
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if "Kumulos export:" in line]
    assert len(progress) == 5 and "50/50 (100.0%)" in progress[-1]
    assert "Kumulos export finished: users written 50" in out
    users = kumulos_connection.users()
    for text in (out, json.dumps(summary)):
        assert "test-server-key" not in text
        assert not any(user["identifier"] in text for user in users)
        assert not any(user["attributes"] and str(user["attributes"].get("email")) in text for user in users)


def test_auth_failure_names_no_secret(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kumulos_connection.script_faults([Fault("status", status=401)])
    with pytest.raises(KumulosAuthError) as caught:
        run_export(output_path=str(tmp_path / "u.jsonl"))
    assert "test-server-key" not in str(caught.value)
    assert "test-server-key" not in capsys.readouterr().out
