"""Shared pieces for the benchmarks (and the demo and release smoke test): standard library only.

Child processes with their peak memory, the emulator as a separate process, a throwaway AIRFLOW_HOME,
robust summary statistics and a plain results table. Every benchmark accepts ``--smoke`` (tiny sizes, for
CI) through :func:`bench_parser`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--smoke`` flag every benchmark understands."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few repetitions (CI)")
    return parser


def peak_rss_kib(pid: int) -> int:
    """Peak resident memory so far (VmHWM) of a running process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


@dataclass(frozen=True)
class ChildResult:
    """How a child process ended: exit status, output, wall time and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_kib: int


def run_child(
    command: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600
) -> ChildResult:
    """Run a command to completion and report its own peak RSS (from ``wait4``, exact per child)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return ChildResult(
            returncode=process.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            seconds=seconds,
            peak_rss_kib=usage.ru_maxrss,
        )


def airflow_env(home: Path) -> dict[str, str]:
    """The current environment pointed at a throwaway AIRFLOW_HOME (SQLite, no examples, own dags folder)."""
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AIRFLOW") and key != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    return env


@dataclass
class EmulatorProcess:
    """A running emulator process: its base URL and credentials, and its process for memory readings."""

    base_url: str
    api_key: str
    server_key: str
    process: subprocess.Popen[bytes]

    def connection_json(self, **extra: object) -> str:
        """An Airflow JSON connection (for ``AIRFLOW_CONN_...``) pointing at this emulator."""
        from airflow_provider_kumulos.testing.emulator import connection_json

        return connection_json(self.base_url, self.api_key, self.server_key, **extra)

    def admin(self, route: str, method: str = "GET", body: object = None, timeout: float = 60) -> Any:
        """Call one route of the emulator's ``/_emulator/`` admin API; its JSON answer, if any."""
        request = urllib.request.Request(
            f"{self.base_url}/_emulator/{route}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else None

    def held_attributes(self, page_size: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
        """What the emulator holds, ``(identifier, attributes)`` per user, read through the users
        listing (``GET /v2/users``, API requests like any client's)."""
        credentials = base64.b64encode(f"{self.api_key}:{self.server_key}".encode()).decode()
        current = 1
        while True:
            request = urllib.request.Request(
                f"{self.base_url}/v2/users?currentPage={current}&numberPerPage={page_size}",
                headers={"Authorization": f"Basic {credentials}", "Accept": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=120) as response:
                users = json.load(response)["users"]
            for user in users:
                yield user["identifier"], user["attributes"]
            if len(users) < page_size:
                return
            current += 1


@contextmanager
def emulator_process(
    users: int,
    workdir: Path,
    *,
    api_key: str = "bench-api-key",
    server_key: str = "bench-server-key",
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[EmulatorProcess]:
    """Start ``python -m airflow_provider_kumulos.testing.emulator`` on a free loopback port; stop it after."""
    ready = workdir / f"emulator-{os.getpid()}-{time.monotonic_ns()}.ready"
    log_path = ready.with_suffix(".log")
    command = [
        python,
        "-m",
        "airflow_provider_kumulos.testing.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]
    command += ["--users", str(users), "--api-key", api_key, "--server-key", server_key]
    command += ["--ready-file", str(ready), *extra_args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not become ready:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield EmulatorProcess(ready.read_text().strip(), api_key, server_key, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        """Summarise at least one value (quartiles need two; one value is its own spread)."""
        ordered = sorted(values)
        if len(ordered) > 1:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), q1, q3, ordered[0], ordered[-1], len(ordered))

    def describe(self, scale: float = 1000.0, unit: str = "ms") -> str:
        """``median (IQR q1-q3, range low-high) unit``, scaled (seconds to milliseconds by default)."""
        return (
            f"{self.median * scale:.1f} {unit} (IQR {self.q1 * scale:.1f}-{self.q3 * scale:.1f}, "
            f"range {self.low * scale:.1f}-{self.high * scale:.1f}, n={self.count})"
        )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as an aligned plain-text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
