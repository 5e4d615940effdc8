"""Drift-proof sync from a Postgres warehouse: the same DAG twice, the second run sends only changed
rows and the users the app overwrote.

A second database on the deployment's PostgreSQL cluster holds ``warehouse_segments`` (one row per
emulator user, a few hundred). The test DAG ``tests/e2e/dags/kumulos_e2e_warehouse.py`` reads it
through an Airflow ``postgres`` connection created with the REST API and syncs it with ``reconcile``
(the users listing read first), a sync state on S3, ``merge`` and ``remove_absent``. Between its two
runs a few rows change and the app overwrites a few users; the emulator's request log must then show
the listing and requests for exactly those users, and the summary the overwritten ones as drifted.
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
#: Rows whose users the app overwrites between the runs (its SDK replaces their attribute set): these
#: lose the warehouse keys, and one more keeps its attributes but with a wrong segment. One user
#: outside the table is overwritten too and must get no request.
APP_OVERWRITTEN = (30, 70, 110)
APP_WRONG_SEGMENT = 150
APP_ATTRIBUTES = {"appVersion": "3.2.0", "pushOptIn": True}
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

    def _app_overwrites(
        self, identifiers: list[str], outsider: str, before: dict[str, dict[str, Any]]
    ) -> set[str]:
        """The app associates a few users again with its own attributes; ``before`` then holds what
        their other attributes must be. Returns the overwritten users that are in the table."""
        emulator = self.checks.emulator
        for identifier in [*(identifiers[index] for index in APP_OVERWRITTEN), outsider]:
            emulator.associate(identifier, APP_ATTRIBUTES)
            before[identifier] = dict(APP_ATTRIBUTES)
        wrong = identifiers[APP_WRONG_SEGMENT]
        emulator.associate(wrong, {**self._attributes(wrong), "warehouse_segment": "vip"})
        return {identifiers[index] for index in (*APP_OVERWRITTEN, APP_WRONG_SEGMENT)}

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
            len(everyone) > ROWS + 1,
            f"the warehouse phase needs more than {ROWS + 1} users, got {len(everyone)}",
        )
        identifiers, joining, outsider = everyone[:ROWS], everyone[ROWS], everyone[ROWS + 1]
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
        pages = -(-len(everyone) // 1000)

        first, first_sent = self._sync()
        _check_summary(first, total=ROWS, succeeded=ROWS, unchanged=0, removed=0)
        _check_requests(first_sent, {identifier: "set" for identifier in identifiers}, pages)
        self._check_users(everyone, before)

        changed = self._change(identifiers, joining)
        overwritten = self._app_overwrites(identifiers, outsider, before)
        second, second_sent = self._sync()
        corrected = len(changed) - 1 + len(overwritten)
        _check_summary(
            second,
            total=ROWS,
            succeeded=corrected,
            unchanged=ROWS - corrected,
            removed=1,
            drifted=len(overwritten),
        )
        expected = {identifier: "set" for identifier in changed | overwritten} | {
            identifiers[DELETED]: "removed"
        }
        _check_requests(second_sent, expected, pages)
        self._check_users(everyone, before)

        line = (
            f"{ROWS} rows, first run {len(first_sent)} requests, second run {len(second_sent)} requests "
            f"for {len(changed)} changed rows ({len(UPDATED)} updated, 1 added, 1 deleted; 1 touched "
            f"unchanged) and {len(overwritten)} users the app overwrote ({second['drifted']} drifted, "
            f"corrected; none for the overwritten user outside the table), {pages} listing page(s) each"
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


def _check_requests(sent: list[dict[str, Any]], expected: dict[str, str], pages: int) -> None:
    """``pages`` users listing pages (reconcile), and requests only for the expected users: GET + PUT
    to set (merge), GET + PUT or DELETE to remove."""
    listing = sum(1 for entry in sent if entry.get("path") == "/v2/users")
    per_user: dict[str | None, Counter[str]] = {}
    for entry in sent:
        if entry.get("path") != "/v2/users":
            per_user.setdefault(entry.get("identifier"), Counter())[entry["method"]] += 1
    unexpected = sorted(str(identifier) for identifier in set(per_user) - set(expected))
    wrong = [
        (identifier, dict(per_user.get(identifier, {})))
        for identifier, kind in expected.items()
        if not _requests_fit(per_user.get(identifier, Counter()), kind)
    ]
    _require(
        listing == pages and not unexpected and not wrong,
        f"{listing} users listing pages (expected {pages}), requests for {len(unexpected)} unexpected "
        f"users (e.g. {unexpected[:3]}), {len(wrong)} expected users with the wrong requests "
        f"(e.g. {wrong[:3]})",
    )


def _requests_fit(methods: Counter[str], kind: str) -> bool:
    if kind == "set":
        return methods == Counter({"GET": 1, "PUT": 1})
    return methods in (Counter({"GET": 1, "PUT": 1}), Counter({"GET": 1, "DELETE": 1}))
