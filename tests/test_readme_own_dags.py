"""The README's "Your own DAGs against the emulator" section, run as a reader would run it.

The section's shell blocks are taken from the README text and run unchanged, but for the port
(a free one instead of 8080, which may be taken): the emulator's block in a second process, every
other block in order in one bash shell, in a throwaway home folder with the environment's ``.venv``
linked into it, with no AIRFLOW settings of the test session. The outcome is checked against what
the section says: the connection line to paste, the connection test, the DAG run, and the counts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
SECTION_TITLE = "## Your own DAGs against the emulator"
EMULATOR_COMMAND = "airflow_provider_kumulos.testing.emulator"


def section() -> str:
    start = README.index(SECTION_TITLE)
    end = README.index("\n## ", start + len(SECTION_TITLE))
    return README[start:end]


def blocks(kind: str) -> list[str]:
    """The section's fenced blocks of ``kind`` (``bash``, ``text``), in order."""
    return re.findall(rf"^```{kind}\n(.*?)^```$", section(), flags=re.MULTILINE | re.DOTALL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_section_has_the_steps_a_newcomer_needs() -> None:
    text = "\n".join(blocks("bash"))
    for step in (
        "export AIRFLOW_HOME=",
        '"$AIRFLOW_HOME/dags"',
        EMULATOR_COMMAND,
        "export AIRFLOW_CONN_KUMULOS_DEFAULT=",
        "export AIRFLOW_CONN_WAREHOUSE=",
        "airflow dags test my_kumulos",
        "curl -s http://127.0.0.1:8080/_emulator/requests",
    ):
        assert step in text, step
    (emulator,) = [block for block in blocks("bash") if EMULATOR_COMMAND in block]
    assert "--port 8080" in emulator


@pytest.mark.slow
def test_the_sections_commands_run_as_written(tmp_path: Path) -> None:
    port = str(free_port())
    bash = [block.replace("8080", port) for block in blocks("bash")]
    (emulator_block,) = [block for block in bash if EMULATOR_COMMAND in block]
    shell_blocks = [block for block in bash if block is not emulator_block]
    (pasted,) = [
        line
        for block in shell_blocks
        for line in block.splitlines()
        if line.startswith("export AIRFLOW_CONN_KUMULOS_DEFAULT=")
    ]
    (counts,) = blocks("text")

    (tmp_path / ".venv").symlink_to(sys.prefix)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp_path)

    emulator = subprocess.Popen(
        ["bash", "-c", emulator_block],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        printed: list[str] = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("export AIRFLOW_CONN_KUMULOS_DEFAULT=") for line in printed):
            assert emulator.stdout is not None and time.monotonic() < deadline, printed
            line = emulator.stdout.readline()
            assert line, f"the emulator stopped: {printed}"
            printed.append(line.rstrip("\n"))
        assert printed[-1] == pasted, "the README's line to paste differs from what the emulator prints"

        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + "\n".join(shell_blocks)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    finally:
        os.killpg(emulator.pid, signal.SIGTERM)
        emulator.wait(30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Connection success!" in output
    assert re.search(r"DagRun Finished: dag_id=my_kumulos, .*state=success", output), output[-5000:]
    assert counts.strip() in result.stdout.splitlines()
    assert '"tier": "gold"' in result.stdout
    home = tmp_path / "kumulos-airflow"
    (export,) = (home / "exports").glob("ds=*/users.jsonl")
    assert len(export.read_text().splitlines()) == 1000
