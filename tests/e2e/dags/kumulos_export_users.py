"""Stand-in for ``example_dags``' user export: every user as one JSON line under the output base."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import ObjectStoragePath, Variable, dag, get_current_context, task


@dag(dag_id="kumulos_export_users", schedule=None, catchup=False, tags=["kumulos", "e2e-stand-in"])
def kumulos_export_users() -> None:
    """Export all users to ``{kumulos_output_base}/users/{run_id}.jsonl``."""

    @task
    def export() -> dict[str, Any]:
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        run_id = get_current_context()["run_id"]
        path = ObjectStoragePath(Variable.get("kumulos_output_base")) / "users" / f"{run_id}.jsonl"
        count = 0
        with path.open("w") as handle:
            for user in KumulosCRMHook().iter_users(per_page=100):
                handle.write(json.dumps(user) + "\n")
                count += 1
        return {"path": str(path), "users": count}

    export()


kumulos_export_users()
