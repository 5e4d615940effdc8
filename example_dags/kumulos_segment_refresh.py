"""Daily segment refresh: users into a SQL warehouse, segments computed in SQL, only what Kumulos lacks
pushed back.

1. ``export_users`` writes every Kumulos user to ``{kumulos_output_base}/segments/ds=<date>/users.jsonl``.
2. ``load_warehouse`` streams that file into the ``kumulos_users`` table of the warehouse behind the
   ``kumulos_warehouse`` connection (here an embedded SQLite database, through the official SQLite
   provider; any common-sql database works the same way), replacing the previous day's rows.
3. ``push_segments`` runs :data:`SEGMENTS_SQL` in the warehouse and sends its rows with
   ``SetAttributesOperator``:

   - ``activity``: ``"inactive_30d"`` when the user's ``lastActive`` is missing or more than 30 days
     before the run's data interval end, else ``"active"``;
   - ``primary_platform``: the ``os`` (lower case) of most of the user's installs, a tie going to the
     platform of the most recently active install; ``"unknown"`` without installs.

   ``reconcile_from`` compares every row with what Kumulos held at step 1, read from that same
   export (no extra request): a user already holding the computed segments is skipped, and one whose
   segment keys the app overwrote since the last run (its SDK's ``associateUserWithInstall()``
   replaces the whole attribute set; last write wins) is corrected. ``sync_state_path`` keeps what the
   last successful sync sent, so those users are also counted as ``drifted``. ``merge=True`` keeps
   the attributes the app stores (name, plan...): each user to write is read right before being
   written, so an attribute the app changed after the export survives. ``remove_absent=True`` clears
   the segment keys of users who left the warehouse (and refuses if more than half of them would, a
   broken load). Up to 10 rejected users are tolerated and listed in ``failures.jsonl``; more fail
   the task.
4. ``report`` logs and returns the counts: users exported, segment sizes, sent, unchanged, drifted,
   removed.

Setup: connections ``kumulos_default`` and ``kumulos_warehouse`` (e.g. ``sqlite:////data/warehouse.db``);
Variable ``kumulos_output_base`` (default ``file:///tmp/kumulos``), where the sync state lives too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import dag, task

from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator, SetAttributesOperator

#: Root folder or bucket prefix of every output, from the ``kumulos_output_base`` Variable.
OUTPUT_BASE = "{{ var.value.get('kumulos_output_base', 'file:///tmp/kumulos') }}"
#: The run's ``ds``; runs triggered without a logical date use the day they were triggered.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
#: Folder of this run's files: the export and the failures file.
RUN_FOLDER = f"{OUTPUT_BASE}/segments/ds={RUN_DATE}"
#: The run's export: the warehouse's input, and what Kumulos held for the push to reconcile against.
EXPORT = f"{RUN_FOLDER}/users.jsonl"
#: What the last successful sync sent, kept from one run to the next.
SYNC_STATE = f"{OUTPUT_BASE}/segments/sync_state.sqlite"
#: The warehouse's Airflow connection (any common-sql database; SQLite here).
WAREHOUSE = "kumulos_warehouse"
#: Rejected users tolerated before ``push_segments`` fails.
MAX_FAILURES = 10
#: Rows inserted into the warehouse per statement.
LOAD_BATCH = 5000

#: One row per user: ``identifier`` plus one column per segment attribute. ``:as_of`` is the end of
#: the run's data interval, as ISO 8601.
SEGMENTS_SQL = """
WITH platforms AS (
    SELECT u.identifier, u.last_active,
           lower(trim(json_extract(i.value, '$.os'))) AS platform,
           count(i.value) AS installs,
           max(julianday(json_extract(i.value, '$.lastActive'))) AS latest
    FROM kumulos_users AS u
    LEFT JOIN json_each(u.installs) AS i ON trim(coalesce(json_extract(i.value, '$.os'), '')) <> ''
    GROUP BY u.identifier, u.last_active, platform
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY identifier ORDER BY installs DESC, latest DESC NULLS LAST, platform
    ) AS rank
    FROM platforms
)
SELECT identifier,
       CASE WHEN julianday(last_active) IS NULL OR julianday(last_active) < julianday(:as_of) - 30
            THEN 'inactive_30d' ELSE 'active' END AS activity,
       coalesce(platform, 'unknown') AS primary_platform
FROM ranked
WHERE rank = 1
"""

log = logging.getLogger(__name__)


@dag(
    dag_id="kumulos_segment_refresh",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["kumulos", "example"],
)
def kumulos_segment_refresh() -> None:
    """Export users, load them into the warehouse, push the SQL-computed segments Kumulos lacks, report."""
    export = ExportUsersOperator(task_id="export_users", output_path=EXPORT)

    @task
    def load_warehouse(exported: dict[str, Any]) -> int:
        """Replace ``kumulos_users`` with the export, streamed a batch at a time; returns the row count."""
        import contextlib
        import json

        from airflow.providers.sqlite.hooks.sqlite import SqliteHook
        from airflow.sdk import ObjectStoragePath

        insert = "INSERT INTO kumulos_users VALUES (?, ?, ?)"
        loaded = 0
        connection = SqliteHook(sqlite_conn_id=WAREHOUSE).get_conn()
        with contextlib.closing(connection), connection as db:  # one transaction, then closed
            db.execute(
                "CREATE TABLE IF NOT EXISTS kumulos_users (identifier TEXT, last_active TEXT, installs TEXT)"
            )
            db.execute("DELETE FROM kumulos_users")
            batch: list[tuple[str, Any, str]] = []
            with ObjectStoragePath(exported["path"]).open("rb") as source:
                # readline rather than iteration: Airflow 3.1's object-storage file wrapper is not iterable.
                for line in iter(source.readline, b""):
                    if not line.strip():
                        continue
                    user = json.loads(line)
                    batch.append(
                        (user["identifier"], user.get("lastActive"), json.dumps(user.get("installs") or []))
                    )
                    if len(batch) >= LOAD_BATCH:
                        db.executemany(insert, batch)
                        loaded += len(batch)
                        batch.clear()
            db.executemany(insert, batch)
            loaded += len(batch)
        return loaded

    loaded = load_warehouse(export.output)

    push = SetAttributesOperator(
        task_id="push_segments",
        sql=SEGMENTS_SQL,
        sql_conn_id=WAREHOUSE,
        sql_parameters={"as_of": "{{ (dag_run.data_interval_end or dag_run.run_after).isoformat() }}"},
        reconcile_from=EXPORT,
        sync_state_path=SYNC_STATE,
        merge=True,
        remove_absent=True,
        max_concurrency=16,
        max_failures=MAX_FAILURES,
        failures_path=f"{RUN_FOLDER}/failures.jsonl",
    )
    loaded >> push

    @task(multiple_outputs=True)
    def report(exported: dict[str, Any], pushed: dict[str, Any]) -> dict[str, Any]:
        """Segment sizes from the warehouse and the push's counts: one log line, and the same as XCom."""
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook
        from airflow.sdk import get_current_context

        context = get_current_context()
        as_of = (context.get("data_interval_end") or context["dag_run"].run_after).isoformat()
        sizes = SqliteHook(sqlite_conn_id=WAREHOUSE).get_records(
            f"SELECT activity, primary_platform, count(*) FROM ({SEGMENTS_SQL}) GROUP BY 1, 2",
            parameters={"as_of": as_of},
        )
        platforms: dict[str, int] = {}
        for _, platform, count in sizes:
            platforms[platform] = platforms.get(platform, 0) + count
        summary = {
            "users_exported": exported["users_written"],
            "export_path": exported["path"],
            "as_of": as_of,
            "inactive_30d": sum(count for activity, _, count in sizes if activity == "inactive_30d"),
            "primary_platform": dict(sorted(platforms.items())),
            "sent": pushed["succeeded"],
            "unchanged": pushed["unchanged"],
            "drifted": pushed["drifted"],
            "removed": pushed["removed"],
            "failures": pushed["failed"],
            "failures_path": pushed["failures_path"],
            "requests": pushed["requests"],
        }
        log.info(
            "Segment refresh: %d users exported, %d inactive_30d, primary_platform %s; %d sent, "
            "%d unchanged, %d drifted (corrected), %d removed, %d failures",
            summary["users_exported"],
            summary["inactive_30d"],
            summary["primary_platform"],
            summary["sent"],
            summary["unchanged"],
            summary["drifted"],
            summary["removed"],
            summary["failures"],
        )
        return summary

    report(export.output, push.output)


kumulos_segment_refresh()
