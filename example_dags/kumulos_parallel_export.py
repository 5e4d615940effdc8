"""Partitioned export: page windows exported by mapped tasks in parallel, then one manifest.

1. ``plan_partitions`` reads ``totalUsers`` once (at run time, not parse time) and splits the pages
   into ``params.partitions`` windows; the last window is open-ended so users added meanwhile are
   still exported.
2. ``export_partition`` is one ``ExportUsersOperator`` per window (dynamic task mapping), each writing
   ``{kumulos_output_base}/parallel/ds=<date>/partition-0000N.jsonl`` atomically; with several
   workers they run side by side.
3. ``write_manifest`` writes ``_manifest.json`` over all partitions (every file with its user count,
   size and SHA-256) and counts users that moved between windows while the partitions ran.

Trigger it with ``{"partitions": 8, "page_size": 1000}`` to change the split. Kumulos serves at most
1000 users per page; the default of 100 gives small apps several partitions too.

Setup: connection ``kumulos_default``; Variable ``kumulos_output_base`` (default ``file:///tmp/kumulos``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_kumulos.operators.kumulos import (
    ExportUsersOperator,
    WriteExportManifestOperator,
    plan_export_partitions,
)

#: Root folder or bucket prefix of every output, from the ``kumulos_output_base`` Variable.
OUTPUT_BASE = "{{ var.value.get('kumulos_output_base', 'file:///tmp/kumulos') }}"
#: The run's ``ds``; runs triggered without a logical date use the day they were triggered.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
#: Folder of this run's partitions and manifest.
RUN_FOLDER = f"{OUTPUT_BASE}/parallel/ds={RUN_DATE}"


@dag(
    dag_id="kumulos_parallel_export",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "partitions": Param(4, type="integer", minimum=1, description="How many page windows"),
        "page_size": Param(100, type="integer", minimum=1, maximum=1000, description="Users per request"),
    },
    tags=["kumulos", "example"],
)
def kumulos_parallel_export() -> None:
    """Plan page windows, export each in its own mapped task, merge one manifest."""

    @task
    def plan_partitions(folder: str) -> list[dict[str, Any]]:
        """One ``ExportUsersOperator`` kwargs dict per page window."""
        params = get_current_context()["params"]
        return plan_export_partitions(
            partitions=params["partitions"],
            page_size=params["page_size"],
            output_path=folder,
            suffix=".jsonl",
        )

    exports = ExportUsersOperator.partial(task_id="export_partition").expand_kwargs(
        plan_partitions(RUN_FOLDER)
    )
    WriteExportManifestOperator(
        task_id="write_manifest", summaries=exports.output, output_path=f"{RUN_FOLDER}/_manifest.json"
    )


kumulos_parallel_export()
