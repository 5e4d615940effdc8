"""Onboarding: wait for a user to sign up, tag them for the welcome journey, then clear the tags.

Trigger it with ``{"user_id": "<identifier>"}`` as the run's conf (default ``new-user-001``).

1. ``wait_for_user``: a deferrable ``KumulosUserSensor``. It checks once; while the user does not
   exist it waits in the triggerer (no worker slot held), polling every 5 seconds, for up to a day.
2. ``start_welcome_journey``: ``SetAttributesOperator`` with ``merge=True``, so the attributes the
   app already stored for the user are kept and only the onboarding keys are added.
3. ``clear_attributes``: ``DeleteAttributesOperator`` once the journey is over. Kumulos deletes a
   user's attributes all at once (there is no per-key delete), so the user ends with none; a user
   already gone counts as done, which makes the task safe to retry.

Setup: connection ``kumulos_default``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag

from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.sensors.kumulos import KumulosUserSensor

USER_ID = "{{ params.user_id }}"


@dag(
    dag_id="kumulos_onboarding",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "user_id": Param(
            "new-user-001", type="string", minLength=1, description="Kumulos identifier of the new user"
        )
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["kumulos", "example"],
)
def kumulos_onboarding() -> None:
    """Wait for ``params.user_id``, set the welcome-journey attributes, then delete the attributes."""
    wait = KumulosUserSensor(
        task_id="wait_for_user",
        user_id=USER_ID,
        deferrable=True,
        poke_interval=5,
        timeout=timedelta(days=1).total_seconds(),
    )
    tag = SetAttributesOperator(
        task_id="start_welcome_journey",
        user_id=USER_ID,
        attributes={"onboarding_stage": "welcome", "onboarding_run": "{{ run_id }}"},
        merge=True,
    )
    clear = DeleteAttributesOperator(task_id="clear_attributes", user_id=USER_ID)
    wait >> tag >> clear


kumulos_onboarding()
