"""Deployment-test DAG: segment attributes synced from a Postgres warehouse, sending only what Kumulos lacks.

Reads ``warehouse_segments`` through the ``kumulos_e2e_warehouse`` connection (the official Postgres
provider) and sets its columns on the users with ``reconcile=True`` (the users listing read first:
users the app overwrote are corrected), a sync state in object storage (they count as drifted),
``merge=True`` (the app's attributes stay) and ``remove_absent=True`` (rows deleted from the table
lose the keys). Triggered only by the deployment test (``tests/e2e/e2e_warehouse.py``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import dag

from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator

OUTPUT_BASE = "{{ var.value.get('kumulos_output_base', 'file:///tmp/kumulos') }}"
SEGMENTS_SQL = (
    "SELECT identifier, warehouse_segment, warehouse_ltv_band, warehouse_score, warehouse_since "
    "FROM warehouse_segments ORDER BY identifier"
)


@dag(
    dag_id="kumulos_e2e_warehouse",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["kumulos", "e2e"],
)
def kumulos_e2e_warehouse() -> None:
    """One task: the warehouse's segment rows to Kumulos, where they differ from what it holds."""
    SetAttributesOperator(
        task_id="sync_segments",
        sql=SEGMENTS_SQL,
        sql_conn_id="kumulos_e2e_warehouse",
        reconcile=True,
        sync_state_path=f"{OUTPUT_BASE}/warehouse/sync_state.sqlite",
        merge=True,
        remove_absent=True,
        max_concurrency=8,
    )


kumulos_e2e_warehouse()
