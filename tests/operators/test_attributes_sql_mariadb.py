"""SQL sources on a real MariaDB server through the MySQL provider's hook, with both of its drivers.

The server is started here on loopback in a throwaway data directory; where it is not installed it
is installed with apt. Without apt the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from attributes_support import run

from airflow_provider_kumulos._bulk.sql_source import open_sql_source
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

pytest.importorskip("airflow.providers.mysql.hooks.mysql")
MySQLdb = pytest.importorskip("MySQLdb")

CONN_ID = "maria_warehouse"
#: The MySQL provider's two drivers, chosen by the connection's ``client`` extra.
CLIENTS = ["mysqlclient", "mysql-connector-python"]
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
LOGIN, PASSWORD, DATABASE = "kumulos", "kumulos-test", "warehouse"


def _unavailable(reason: str) -> None:
    """Skip, or fail in CI, where every database the documentation names must be tested."""
    if os.environ.get("CI"):
        pytest.fail(f"MariaDB server unavailable in CI: {reason}")
    pytest.skip(reason)


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def _server_binaries() -> tuple[str, str]:
    """``mariadbd`` and ``mariadb-install-db``, installed with apt (Debian's mariadb-server) if missing."""
    server, install_db = _which("mariadbd"), _which("mariadb-install-db")
    if server and install_db:
        return server, install_db
    if not shutil.which("apt-get") or os.geteuid() != 0:
        _unavailable("mariadbd is not installed and apt-get cannot install it here (no apt, or not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env, timeout=300)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mariadb-server"],
            check=True,
            capture_output=True,
            env=env,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"apt-get could not install mariadb-server: {exc}")
    server, install_db = _which("mariadbd"), _which("mariadb-install-db")
    if not server or not install_db:
        _unavailable("mariadb-server installed no mariadbd/mariadb-install-db")
    return str(server), str(install_db)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def mariadb_uri() -> Iterator[str]:
    """A throwaway MariaDB server on 127.0.0.1 with a password login and a database, removed afterwards."""
    server, install_db = _server_binaries()
    base = Path(tempfile.mkdtemp(prefix="kumulos-mariadb-"))
    data, sock, port = base / "data", base / "mariadb.sock", _free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={data}",
                f"--user={user}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        process = subprocess.Popen(
            [
                server,
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={sock}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--user={user}",
                f"--log-error={base / 'log'}",
                f"--pid-file={base / 'pid'}",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-log-bin",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        root = _connect_when_up(process, sock, base / "log")
        with contextlib.closing(root), contextlib.closing(root.cursor()) as cursor:
            cursor.execute(f"CREATE DATABASE {DATABASE}")
            cursor.execute(f"CREATE USER '{LOGIN}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            cursor.execute(f"GRANT ALL ON {DATABASE}.* TO '{LOGIN}'@'127.0.0.1'")
        yield f"mysql://{LOGIN}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"could not start a local MariaDB server: {exc}")
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(base, ignore_errors=True)


def _connect_when_up(process: subprocess.Popen[bytes], sock: Path, log: Path) -> Any:
    """A root connection over the server's socket, once it answers (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return MySQLdb.connect(unix_socket=str(sock), user="root", autocommit=True)
        except MySQLdb.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"MariaDB did not come up (exit {process.poll()}):\n{tail}") from None
            time.sleep(0.2)


@pytest.fixture
def warehouse(mariadb_uri: str) -> Iterator[Any]:
    """An empty database on the server (its tables dropped), for setting up each test's data."""
    host_port = mariadb_uri.split("@")[1].split("/")[0]
    host, port = host_port.split(":")
    db = MySQLdb.connect(
        host=host, port=int(port), user=LOGIN, password=PASSWORD, database=DATABASE, autocommit=True
    )
    with contextlib.closing(db):
        with contextlib.closing(db.cursor()) as cursor:
            cursor.execute("SHOW TABLES")
            for (table,) in cursor.fetchall():
                cursor.execute(f"DROP TABLE `{table}`")
        yield db


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest, mariadb_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The connection ``maria_warehouse`` with one of the provider's drivers."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", f"{mariadb_uri}?client={request.param}")
    return str(request.param)


def test_mariadb_values_reach_kumulos_as_json(
    kumulos_connection: KumulosEmulator, warehouse: Any, client: str
) -> None:
    with contextlib.closing(warehouse.cursor()) as cursor:
        cursor.execute(
            """
            CREATE TABLE segments (
                id BIGINT, tier VARCHAR(20), vip BOOLEAN, score DOUBLE, balance DECIMAL(10, 2),
                visits DECIMAL(20, 0), joined DATE, seen DATETIME, stamp TIMESTAMP NULL, opens TIME,
                profile JSON, uid UUID, nothing TEXT
            )
            """
        )
        cursor.execute(
            """
            INSERT INTO segments VALUES (
                42, 'gold', TRUE, 9.5, 1234.50, 7, '2024-05-01', '2024-05-01 12:30:05',
                '2024-05-01 12:30:05', '08:15:00', '{"city": "Paris", "n": [1, 2.5]}',
                '00000000-0000-0000-0000-000000000001', NULL
            )
            """
        )
    summary = run(
        SetAttributesOperator(
            task_id="t", sql="SELECT * FROM segments", sql_conn_id=CONN_ID, identifier_column="id"
        )
    )
    assert (summary["succeeded"], summary["failed"]) == (1, 0), summary
    assert kumulos_connection.get_attributes("42") == {
        "tier": "gold",
        "vip": 1,
        "score": 9.5,
        "balance": 1234.5,
        "visits": 7,
        "joined": "2024-05-01",
        "seen": "2024-05-01T12:30:05",
        "stamp": "2024-05-01T12:30:05",
        "opens": "08:15:00",
        "profile": '{"city": "Paris", "n": [1, 2.5]}',
        "uid": "00000000-0000-0000-0000-000000000001",
        "nothing": None,
    }


#: Reads every row of a generated result through the SQL source in a fresh process and prints the row
#: count and the process's peak resident memory (VmHWM). argv: rows, streamed ("1") or buffered ("0").
_READER = """
import json, sys
from airflow_provider_kumulos._bulk import sql_source

rows, streamed = int(sys.argv[1]), sys.argv[2] == "1"
if not streamed:  # the control: the drivers' default cursors, which hold the whole result
    sql_source.SERVER_SIDE_CURSORS.clear()
query = (
    "SELECT CONCAT('user-', seq) AS identifier, seq AS n, REPEAT('x', 200) AS note "
    f"FROM seq_1_to_{rows}"
)
count = 0
with sql_source.open_sql_source(
    query, conn_id=sys.argv[3], parameters=None, identifier_column="identifier", with_attributes=True
) as records:
    for record in records:
        count += 1
        last = record
assert (last.identifier, last.attributes["n"]) == (f"user-{rows}", rows), last
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps({"rows": count, "peak_kib": int(status)}))
"""


def _peak_kib(rows: int, *, streamed: bool = True) -> int:
    """Peak resident memory (KiB) of a fresh process that read ``rows`` rows through the SQL source."""
    done = subprocess.run(
        [sys.executable, "-c", _READER, str(rows), "1" if streamed else "0", CONN_ID],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["rows"] == rows
    return int(result["peak_kib"])


def test_mariadb_rows_stream_with_flat_memory(client: str) -> None:
    """200,000 rows take no more memory than 20,000; the drivers' default cursors (the control) do."""
    small, large = _peak_kib(20_000), _peak_kib(200_000)
    print(f"{client}: peak RSS reading 20,000 rows {small} KiB, 200,000 rows {large} KiB")
    assert large - small < 8 * 1024, (small, large)
    if client == "mysqlclient":
        buffered = _peak_kib(200_000, streamed=False)
        print(f"{client}: 200,000 rows through the default (buffered) cursor {buffered} KiB")
        assert buffered - large > 30 * 1024, (large, buffered)


def test_mariadb_bad_sql_fails_before_any_request(kumulos_connection: KumulosEmulator, client: str) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(
            SetAttributesOperator(
                task_id="t", sql="SELECT identifer FROM seq_1_to_5\nLIMIT 1", sql_conn_id=CONN_ID
            )
        )
    message = str(caught.value)
    assert caught.value.parameter == "sql"
    assert "starting 'SELECT identifer FROM seq_1_to_5'" in message
    assert "Unknown column 'identifer'" in message
    assert kumulos_connection.requests == []


def test_mariadb_missing_identifier_column_fails_before_any_request(
    kumulos_connection: KumulosEmulator, client: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(
            SetAttributesOperator(
                task_id="t", sql="SELECT seq AS user_id, seq AS n FROM seq_1_to_5000", sql_conn_id=CONN_ID
            )
        )
    assert caught.value.parameter == "identifier_column"
    assert "column 'identifier' is not among the columns the query returned ['user_id', 'n']" in str(
        caught.value
    )
    assert kumulos_connection.requests == []


def test_mariadb_reading_can_stop_early(client: str) -> None:
    """Leaving the source before its last row (a task that failed) closes it cleanly mid-result."""
    with open_sql_source(
        "SELECT CONCAT('user-', seq) AS identifier FROM seq_1_to_50000",
        conn_id=CONN_ID,
        parameters=None,
        identifier_column="identifier",
        with_attributes=False,
    ) as records:
        assert [next(records).identifier for _ in range(3)] == ["user-1", "user-2", "user-3"]
