"""Change-only sync from a Postgres warehouse: the same DAG twice, the second run sends only changed rows.

A second database on the deployment's PostgreSQL cluster holds ``warehouse_segments`` (one row per
emulator user, a few hundred). The test DAG ``tests/e2e/dags/kumulos_e2e_warehouse.py`` reads it
through an Airflow ``postgres`` connection created with the REST API and syncs it with a sync state
on S3, ``merge`` and ``remove_absent``. Between its two runs a few rows change; the emulator's
request log must then show requests for exactly those users.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from e2e_checks import Checks
from e2e_postgres import ROLE, PostgresCluster
from e2e_procs import DeploymentError, wait_for

DAG_ID = "kumulos_e2e_warehouse"
TASK_ID = "sync_segments"
CONN_ID = "kumulos_e2e_warehouse"
DATABASE = "warehouse"
ROWS = 300
COLUMNS = ("warehouse_segment", "warehouse_ltv_band", "warehouse_score", "warehouse_since")
SEGMENTS = ("loyal", "new", "at_risk", "dormant")
#: Rows (by position) changed between the two runs, and the one deleted; one more is touched but
#: keeps its values, which must not count as a change.
UPDATED = (10, 50, 90, 130, 170)
DELETED = 200
TOUCHED = 20
TEST_DAGS = Path(__file__).resolve().parent / "dags"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DeploymentError(message)


def _row(index: int, identifier: str) -> tuple[Any, ...]:
    return (
        identifier,
        SEGMENTS[index % len(SEGMENTS)],
        index % 5,
        Decimal(index * 37 % 10_000) / 100,
        date(2025, 1, 1) + timedelta(days=index),
    )


def _as_attribute(value: Any) -> Any:
    """What the SQL source sends for a Postgres value (see docs/attributes.md, SQL sources)."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class WarehouseSync:
    """Load the warehouse, run the DAG, change a few rows, run it again, check both runs."""

    def __init__(self, checks: Checks, postgres: PostgresCluster) -> None:
        self.checks = checks
        self.postgres = postgres

    def _connect(self, database: str) -> Any:
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=self.postgres.port,
            user=ROLE,
            password=self.postgres.password,
            dbname=database,
        )

    def _execute(self, *statements: tuple[str, Any]) -> None:
        """Run ``statements`` in one transaction of the warehouse database."""
        connection = self._connect(DATABASE)
        try:
            with connection, connection.cursor() as cursor:
                for sql, parameters in statements:
                    cursor.execute(sql, parameters)
        finally:
            connection.close()

    def _warehouse(self) -> dict[str, dict[str, Any]]:
        """The table as the attributes each user should hold."""
        connection = self._connect(DATABASE)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT identifier, {', '.join(COLUMNS)} FROM warehouse_segments")
                return {
                    row[0]: {key: _as_attribute(value) for key, value in zip(COLUMNS, row[1:], strict=True)}
                    for row in cursor.fetchall()
                }
        finally:
            connection.close()

    def _create(self, identifiers: list[str]) -> None:
        """The second database, its table, and the Airflow connection to it (through the REST API)."""
        admin = self._connect("airflow")
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            admin.close()
        self._execute(
            (
                "CREATE TABLE warehouse_segments (identifier TEXT PRIMARY KEY, warehouse_segment TEXT, "
                "warehouse_ltv_band INTEGER, warehouse_score NUMERIC(6, 2), warehouse_since DATE)",
                None,
            ),
            *(
                ("INSERT INTO warehouse_segments VALUES (%s, %s, %s, %s, %s)", _row(index, identifier))
                for index, identifier in enumerate(identifiers)
            ),
        )
        connection = {
            "connection_id": CONN_ID,
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": self.postgres.port,
            "login": ROLE,
            "password": self.postgres.password,
            "schema": DATABASE,
        }
        response = self.checks.api.client.post("/api/v2/connections", json=connection)
        _require(
            response.status_code == 201,
            f"creating connection {CONN_ID}: HTTP {response.status_code} {response.text[:300]}",
        )

    def _change(self, identifiers: list[str], joining: str) -> set[str]:
        """Update a few rows, delete one, add one, touch one without changing it; returns who changed."""
        self._execute(
            *(
                (
                    "UPDATE warehouse_segments SET warehouse_segment = %s, warehouse_score = %s "
                    "WHERE identifier = %s",
                    ("churned", Decimal("0.50") + position, identifiers[index]),
                )
                for position, index in enumerate(UPDATED)
            ),
            (
                "UPDATE warehouse_segments SET warehouse_segment = warehouse_segment WHERE identifier = %s",
                (identifiers[TOUCHED],),
            ),
            ("DELETE FROM warehouse_segments WHERE identifier = %s", (identifiers[DELETED],)),
            ("INSERT INTO warehouse_segments VALUES (%s, %s, %s, %s, %s)", _row(len(identifiers), joining)),
        )
        return {identifiers[index] for index in UPDATED} | {identifiers[DELETED], joining}

    def _sync(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One run of the DAG: its summary (XCom) and the emulator requests sent while it ran."""
        since = time.time()
        result = self.checks.run_dag(DAG_ID)
        until = time.time()
        summary: dict[str, Any] = self.checks.api.xcom(DAG_ID, result.run_id, TASK_ID)
        sent = [entry for entry in self.checks.emulator.requests() if since <= entry["timestamp"] <= until]
        _require(
            len(sent) == summary["requests"] and all(entry["status"] == 200 for entry in sent),
            f"run {result.run_id}: summary counts {summary['requests']} requests, the emulator received "
            f"{len(sent)}: {Counter((entry['method'], entry['status']) for entry in sent)}",
        )
        return summary, sent

    def run(self) -> None:
        emulator = self.checks.emulator
        everyone = sorted(emulator.user_ids())
        _require(
            len(everyone) > ROWS, f"the warehouse phase needs more than {ROWS} users, got {len(everyone)}"
        )
        identifiers, joining = everyone[:ROWS], everyone[ROWS]
        before = {identifier: self._attributes(identifier) for identifier in everyone}
        _require(
            not any(key in attributes for attributes in before.values() for key in COLUMNS),
            "users already hold warehouse attributes before the first sync",
        )
        self._create(identifiers)
        wait_for(
            f"the DAG {DAG_ID} to be parsed", lambda: self.checks.api.dag(DAG_ID), timeout=180, interval=1.0
        )
        self.checks.api.unpause(DAG_ID)

        first, first_sent = self._sync()
        _check_summary(first, total=ROWS, succeeded=ROWS, unchanged=0, removed=0)
        _check_requests(first_sent, {identifier: "set" for identifier in identifiers})
        self._check_users(everyone, before)

        changed = self._change(identifiers, joining)
        second, second_sent = self._sync()
        _check_summary(
            second, total=ROWS, succeeded=len(changed) - 1, unchanged=ROWS - len(changed) + 1, removed=1
        )
        expected = {identifier: "set" for identifier in changed} | {identifiers[DELETED]: "removed"}
        _check_requests(second_sent, expected)
        self._check_users(everyone, before)

        line = (
            f"{ROWS} rows, first run {len(first_sent)} requests, second run {len(second_sent)} requests "
            f"for {len(changed)} changed rows ({len(UPDATED)} updated, 1 added, 1 deleted; 1 touched unchanged)"
        )
        print(f"[e2e] warehouse sync: {line}", flush=True)
        self.checks.figures.add("warehouse sync (Postgres)", line)

    def _attributes(self, identifier: str) -> dict[str, Any]:
        return dict((self.checks.emulator.user(identifier) or {}).get("attributes") or {})

    def _check_users(self, everyone: list[str], before: dict[str, dict[str, Any]]) -> None:
        """Users in the table hold its row; the others hold no warehouse key; other attributes kept."""
        warehouse = self._warehouse()
        wrong, lost = [], []
        for identifier in everyone:
            attributes = self._attributes(identifier)
            synced = {key: attributes[key] for key in COLUMNS if key in attributes}
            if synced != warehouse.get(identifier, {}):
                wrong.append((identifier, synced, warehouse.get(identifier)))
            others = {key: value for key, value in attributes.items() if key not in COLUMNS}
            if others != before[identifier]:
                lost.append(identifier)
        _require(not wrong, f"{len(wrong)} users do not match the warehouse, e.g. {wrong[:3]}")
        _require(not lost, f"{len(lost)} users lost or changed other attributes, e.g. {lost[:3]}")


def _check_summary(summary: dict[str, Any], **expected: int) -> None:
    counts = {key: summary.get(key) for key in (*expected, "failed", "removal_failed")}
    _require(
        counts == {**expected, "failed": 0, "removal_failed": 0},
        f"sync summary {counts}, expected {expected} and no failures",
    )


def _check_requests(sent: list[dict[str, Any]], expected: dict[str, str]) -> None:
    """Requests only for the expected users: GET + PUT to set (merge), GET + PUT or DELETE to remove."""
    per_user: dict[str | None, Counter[str]] = {}
    for entry in sent:
        per_user.setdefault(entry.get("identifier"), Counter())[entry["method"]] += 1
    unexpected = sorted(str(identifier) for identifier in set(per_user) - set(expected))
    wrong = [
        (identifier, dict(per_user.get(identifier, {})))
        for identifier, kind in expected.items()
        if not _requests_fit(per_user.get(identifier, Counter()), kind)
    ]
    _require(
        not unexpected and not wrong,
        f"requests for {len(unexpected)} unexpected users (e.g. {unexpected[:3]}), "
        f"{len(wrong)} expected users with the wrong requests (e.g. {wrong[:3]})",
    )


def _requests_fit(methods: Counter[str], kind: str) -> bool:
    if kind == "set":
        return methods == Counter({"GET": 1, "PUT": 1})
    return methods in (Counter({"GET": 1, "PUT": 1}), Counter({"GET": 1, "DELETE": 1}))
