"""Stand-in for ``example_dags``' onboarding: wait (deferred) for a user to exist, then set attributes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, dag, task
from e2e_standin_trigger import UserExistsTrigger


class UserSensor(BaseSensorOperator):
    """Defers at once to :class:`UserExistsTrigger`; succeeds when the trigger sees the user."""

    template_fields = ("user_id",)

    def __init__(self, *, user_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id

    def execute(self, context: Any) -> None:
        self.defer(
            trigger=UserExistsTrigger(self.user_id, 1.0), method_name="done", timeout=timedelta(minutes=5)
        )

    def done(self, context: Any, event: dict[str, Any]) -> None:
        self.log.info("user appeared: %s", event["user_id"])


@dag(
    dag_id="kumulos_onboarding",
    schedule=None,
    catchup=False,
    params={"user_id": "new-user"},
    tags=["kumulos", "e2e-stand-in"],
)
def kumulos_onboarding() -> None:
    """Wait for ``dag_run.conf["user_id"]`` to exist, then mark it onboarded."""

    @task
    def onboard(params: dict[str, Any]) -> None:
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        hook = KumulosCRMHook()
        hook.set_attributes(params["user_id"], {**hook.get_attributes(params["user_id"]), "onboarded": True})

    UserSensor(task_id="wait_for_user", user_id="{{ params.user_id }}") >> onboard()


kumulos_onboarding()
