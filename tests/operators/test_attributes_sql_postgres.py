"""SQL sources on a real Postgres server (started here on loopback; skipped when it cannot be)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from attributes_support import run

from airflow_provider_kumulos._bulk import sql_source as _sql_source
from airflow_provider_kumulos._bulk.sql_source import open_sql_source
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

pytest.importorskip("airflow.providers.postgres.hooks.postgres")
psycopg2 = pytest.importorskip("psycopg2")

CONN_ID = "pg_warehouse"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_uri() -> Iterator[str]:
    """A throw-away Postgres cluster on 127.0.0.1, trusted local login, removed afterwards."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("initdb/pg_ctl not installed")
    # Postgres refuses to run as root: run it as the postgres account when there is one.
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres account")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="kumulos-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    data, port = base / "data", _free_port()
    started = False
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off"
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        started = True
        uri = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(uri).close()
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield uri
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"could not start a local Postgres server: {exc}")
    finally:
        if started:
            subprocess.run(
                [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def warehouse(postgres_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh schema's worth of tables in the server, behind the connection ``pg_warehouse``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", postgres_uri)
    with contextlib.closing(psycopg2.connect(postgres_uri)) as db:
        db.autocommit = True
        with db.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        yield db


def test_sql_hook_params_reach_the_database_hook(kumulos_connection: KumulosEmulator, warehouse: Any) -> None:
    # The table lives in schema crm; only the search_path that sql_hook_params set makes it visible.
    with warehouse.cursor() as cursor:
        cursor.execute(
            "DROP SCHEMA IF EXISTS crm CASCADE; CREATE SCHEMA crm;"
            "CREATE TABLE crm.segments (id text, tier text); INSERT INTO crm.segments VALUES ('u-1', 'gold')"
        )
    query = {
        "task_id": "t",
        "sql": "SELECT id, tier FROM segments",
        "sql_conn_id": CONN_ID,
        "identifier_column": "id",
    }
    with pytest.raises(KumulosInputError, match='relation "segments" does not exist'):
        run(SetAttributesOperator(**query))
    summary = run(SetAttributesOperator(**query, sql_hook_params={"options": "-c search_path=crm"}))
    assert (summary["succeeded"], summary["failed"]) == (1, 0)
    assert kumulos_connection.get_attributes("u-1") == {"tier": "gold"}


def test_postgres_values_reach_kumulos_as_json(kumulos_connection: KumulosEmulator, warehouse: Any) -> None:
    emu = kumulos_connection
    with warehouse.cursor() as cursor:
        cursor.execute(
            """
            CREATE TABLE segments (
                id bigint, tier text, vip boolean, score double precision, balance numeric(10, 2),
                visits numeric, joined date, seen timestamptz, local_seen timestamp, profile jsonb,
                raw json, tags text[], lucky int[], uid uuid, nothing text
            );
            INSERT INTO segments VALUES (
                42, 'gold', true, 9.5, 1234.50, 7, '2024-05-01', '2024-05-01 12:30:05+00',
                '2024-05-01 12:30:05', '{"city": "Paris", "n": [1, 2.5]}', '{"a": null}',
                ARRAY['x', 'y'], ARRAY[7, 13], '00000000-0000-0000-0000-000000000001', NULL
            );
            """
        )
    summary = run(
        SetAttributesOperator(
            task_id="t", sql="SELECT * FROM segments", sql_conn_id=CONN_ID, identifier_column="id"
        )
    )
    assert (summary["succeeded"], summary["failed"]) == (1, 0)
    assert emu.get_attributes("42") == {
        "tier": "gold",
        "vip": True,
        "score": 9.5,
        "balance": 1234.5,
        "visits": 7,
        "joined": "2024-05-01",
        "seen": "2024-05-01T12:30:05+00:00",
        "local_seen": "2024-05-01T12:30:05",
        "profile": {"city": "Paris", "n": [1, 2.5]},
        "raw": {"a": None},
        "tags": ["x", "y"],
        "lucky": [7, 13],
        "uid": "00000000-0000-0000-0000-000000000001",
        "nothing": None,
    }
    [request] = emu.requests
    assert json.loads(request.body)["balance"] == 1234.5


@pytest.mark.parametrize(
    ("psycopg3", "cursor"),
    [(True, None), (True, "dictcursor"), (False, None), (False, "realdictcursor")],
    ids=["psycopg", "psycopg-dict-rows", "psycopg2", "psycopg2-realdictcursor"],
)
def test_postgres_rows_are_read_through_a_named_server_side_cursor(
    warehouse: Any, postgres_uri: str, monkeypatch: pytest.MonkeyPatch, psycopg3: bool, cursor: str | None
) -> None:
    from airflow.providers.postgres.hooks import postgres

    if psycopg3 and not postgres.USE_PSYCOPG3:
        pytest.skip("the Postgres provider here does not use psycopg 3")
    monkeypatch.setattr(postgres, "USE_PSYCOPG3", psycopg3)
    if cursor is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", f"{postgres_uri}?cursor={cursor}")
    with warehouse.cursor() as setup:
        setup.execute(
            "CREATE TABLE users AS SELECT 'u' || n AS identifier, n, n % 2 = 0 AS even "
            "FROM generate_series(1, 2500) n"
        )
    with open_sql_source(
        "SELECT identifier, n, even FROM users ORDER BY n",
        conn_id=CONN_ID,
        parameters=None,
        identifier_column="identifier",
        with_attributes=True,
    ) as records:
        first = next(records)
        with warehouse.cursor() as probe:  # what the reading session last ran
            probe.execute(
                "SELECT query FROM pg_stat_activity WHERE query LIKE 'FETCH FORWARD%' OR query LIKE 'DECLARE%'"
            )
            seen_cursors = [row[0] for row in probe.fetchall()]
        rest = list(records)
    assert (first.identifier, first.attributes) == ("u1", {"n": 1, "even": False})
    assert (len(rest), rest[-1].identifier, rest[-1].attributes) == (2499, "u2500", {"n": 2500, "even": True})
    assert seen_cursors == [f'FETCH FORWARD {_sql_source.FETCH_ROWS} FROM "{_sql_source.CURSOR_NAME}"'], (
        seen_cursors
    )


def test_postgres_errors_fail_before_any_request(kumulos_connection: KumulosEmulator, warehouse: Any) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run(
            SetAttributesOperator(
                task_id="t", sql="SELECT identifer FROM pg_class\nLIMIT 1", sql_conn_id=CONN_ID
            )
        )
    message = str(caught.value)
    assert caught.value.parameter == "sql"
    assert "starting 'SELECT identifer FROM pg_class'" in message
    assert 'column "identifer" does not exist' in message
    assert kumulos_connection.requests == []
