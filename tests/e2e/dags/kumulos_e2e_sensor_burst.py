"""DAG of the deployment test's sensor burst (``tests/e2e/e2e_sensors.py``), not an example.

``params.count`` deferrable ``KumulosUserSensor`` tasks (mapped) wait for users named
``<params.prefix>-000`` ... in one run, so that many triggers wait in the triggerer at once.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_kumulos.sensors.kumulos import KumulosUserSensor


@dag(
    dag_id="kumulos_e2e_sensor_burst",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_tasks=200,
    params={
        "prefix": Param("e2e-burst", type="string", minLength=1),
        "count": Param(100, type="integer", minimum=1, maximum=1000),
    },
    tags=["kumulos", "e2e"],
)
def kumulos_e2e_sensor_burst() -> None:
    """One deferrable sensor per user id; the run succeeds once every user exists."""

    @task
    def user_ids() -> list[str]:
        params = get_current_context()["params"]
        return [f"{params['prefix']}-{number:03d}" for number in range(params["count"])]

    KumulosUserSensor.partial(task_id="wait_for_user", deferrable=True, poke_interval=2, timeout=600).expand(
        user_id=user_ids()
    )


kumulos_e2e_sensor_burst()
