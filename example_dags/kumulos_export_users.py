"""Daily export of every Kumulos user to object storage, announced as an Asset.

One ``ExportUsersOperator`` streams the users page by page into
``{kumulos_output_base}/users/ds=<date>/users.jsonl`` (JSON Lines, each user exactly as Kumulos sent
it). The file appears only once the whole export succeeded, so downstream DAGs scheduled on the
``kumulos_users`` asset never see a partial file; a rerun of the same day replaces it whole.

Setup: connection ``kumulos_default`` (type ``kumulos``); Airflow Variable ``kumulos_output_base``
(``s3://aws_default@my-bucket/kumulos`` or ``file:///data/kumulos``; default
``file:///tmp/kumulos``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, dag

from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator

#: Root folder or bucket prefix of every output, from the ``kumulos_output_base`` Variable.
OUTPUT_BASE = "{{ var.value.get('kumulos_output_base', 'file:///tmp/kumulos') }}"
#: The run's ``ds``; runs triggered without a logical date use the day they were triggered.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"

#: Emitted when a day's export is published; schedule downstream DAGs on it.
KUMULOS_USERS = Asset(name="kumulos_users", uri="kumulos://crm/users")


@dag(
    dag_id="kumulos_export_users",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["kumulos", "example"],
)
def kumulos_export_users() -> None:
    """Export all users as JSON Lines under ``users/ds=<date>/``."""
    ExportUsersOperator(
        task_id="export_users",
        output_path=f"{OUTPUT_BASE}/users/ds={RUN_DATE}/users.jsonl",
        format="jsonl",
        outlets=[KUMULOS_USERS],
    )


kumulos_export_users()
