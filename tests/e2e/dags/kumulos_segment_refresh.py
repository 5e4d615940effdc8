"""Stand-in for ``example_dags``' segment refresh: read users, compute a segment, write it back."""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task


@dag(dag_id="kumulos_segment_refresh", schedule=None, catchup=False, tags=["kumulos", "e2e-stand-in"])
def kumulos_segment_refresh() -> None:
    """Tag every user with ``segment`` = the platform of their first install."""

    @task
    def refresh() -> dict[str, Any]:
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        hook = KumulosCRMHook()
        updated = 0
        for user in hook.iter_users(per_page=50):
            installs = user.get("installs") or [{}]
            hook.set_attributes(user["identifier"], {"segment": str(installs[0].get("os", "none")).lower()})
            updated += 1
        return {"updated": updated}

    refresh()


kumulos_segment_refresh()
