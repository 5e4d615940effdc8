"""Stand-in for ``example_dags``' parallel export: page ranges exported by mapped tasks, then a manifest."""

from __future__ import annotations

import json
import math
from typing import Any

from airflow.sdk import ObjectStoragePath, Variable, dag, get_current_context, task

PER_PAGE = 20
PARTITIONS = 4


@dag(dag_id="kumulos_parallel_export", schedule=None, catchup=False, tags=["kumulos", "e2e-stand-in"])
def kumulos_parallel_export() -> None:
    """Split the users listing into page ranges, export each in its own task, list the parts."""

    @task
    def plan() -> list[list[int]]:
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        total = KumulosCRMHook().fetch_users_page(1, PER_PAGE).total_users
        pages = max(1, math.ceil(total / PER_PAGE))
        step = math.ceil(pages / PARTITIONS)
        return [[start, min(start + step - 1, pages)] for start in range(1, pages + 1, step)]

    @task
    def export_partition(bounds: list[int]) -> dict[str, Any]:
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        run_id = get_current_context()["run_id"]
        path = ObjectStoragePath(Variable.get("kumulos_output_base")) / "parallel" / run_id
        part = path / f"part-{bounds[0]:05d}-{bounds[1]:05d}.jsonl"
        count = 0
        with part.open("w") as handle:
            for page in KumulosCRMHook().iter_pages(PER_PAGE, start_page=bounds[0], end_page=bounds[1]):
                for user in page.users:
                    handle.write(json.dumps(user) + "\n")
                    count += 1
        return {"path": str(part), "users": count}

    @task
    def write_manifest(parts: list[dict[str, Any]]) -> dict[str, Any]:
        run_id = get_current_context()["run_id"]
        path = ObjectStoragePath(Variable.get("kumulos_output_base")) / "parallel" / run_id / "manifest.json"
        manifest = {"parts": list(parts), "users": sum(part["users"] for part in parts)}
        path.write_text(json.dumps(manifest))
        return {"manifest": str(path), **manifest}

    write_manifest(export_partition.expand(bounds=plan()))


kumulos_parallel_export()
