"""KumulosUserSensor: wait until a Kumulos user exists, optionally with given attribute values.

Thin orchestration: the hook does every request (with its retries), ``_policy`` decides what counts
as "not yet", and deferrable mode hands the waiting to :class:`KumulosUserTrigger`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_kumulos import _compat, _policy
from airflow_provider_kumulos.exceptions import KumulosError, KumulosUserNotFoundError
from airflow_provider_kumulos.hooks._params import SHARED_PARAMS, check_hook_params
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class KumulosUserSensor(BaseSensorOperator):
    """Wait until Kumulos knows ``user_id`` (and, if given, its attributes equal ``attributes_match``).

    Succeeds with the user's attributes as XCom. A missing user, attributes that do not match yet,
    and transient failures that outlived the hook's retries (429, 5xx, network) mean "not yet";
    bad credentials (401), a 422, invalid arguments and a broken connection fail the task at once.

    :param user_id: the user identifier (templated).
    :param kumulos_conn_id: Airflow connection of type ``kumulos`` (templated).
    :param attributes_match: attribute values that must all be present and equal (templated);
        None waits for the user only.
    :param deferrable: wait in the triggerer instead of a worker slot (default: the
        ``[operators] default_deferrable`` setting).
    :param hook_params: arguments for the hook, here and in the trigger when deferred: ``timeout``,
        ``connect_timeout``, ``max_retries``, ``backoff_base``, ``backoff_max``, ``max_retry_after``,
        ``verify`` (each overrides the connection extra of the same name). Checked when the sensor is
        built; not templated.
    """

    template_fields: Sequence[str] = ("user_id", "kumulos_conn_id", "attributes_match")
    ui_color = "#d9ecf2"

    def __init__(
        self,
        *,
        user_id: str,
        kumulos_conn_id: str = KumulosCRMHook.default_conn_name,
        attributes_match: dict[str, Any] | None = None,
        deferrable: bool = _compat.conf().getboolean("operators", "default_deferrable", fallback=False),
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.user_id = user_id
        self.kumulos_conn_id = kumulos_conn_id
        self.attributes_match = attributes_match
        self.deferrable = deferrable
        self.hook_params = check_hook_params(hook_params, SHARED_PARAMS)

    @cached_property
    def hook(self) -> KumulosCRMHook:
        """The hook every poke of this task uses (one pooled session)."""
        return KumulosCRMHook(self.kumulos_conn_id, **self.hook_params)

    def poke(self, context: Context) -> PokeReturnValue:
        """One check: done with the attributes, not yet, or raise for a failure waiting cannot fix."""
        expected = _policy.check_attributes_match(self.attributes_match)
        try:
            attributes = self.hook.get_attributes(self.user_id)
        except KumulosError as exc:
            if not _policy.keeps_waiting(exc):
                raise
            if isinstance(exc, KumulosUserNotFoundError):
                self.log.info("Kumulos user %r does not exist yet.", self.user_id)
            else:
                self.log.warning("Kumulos still failing after retries, will check again: %s", exc)
            return PokeReturnValue(is_done=False)
        if not _policy.attributes_satisfy(attributes, expected):
            self.log.info(
                "Kumulos user %r exists; attributes %s do not match yet.",
                self.user_id,
                ", ".join(sorted(expected or ())),
            )
            return PokeReturnValue(is_done=False)
        self.log.info("Found Kumulos user %r%s.", self.user_id, _matching(expected))
        return PokeReturnValue(is_done=True, xcom_value=attributes)

    def execute(self, context: Context) -> Any:
        """Poke (or reschedule) as any sensor; deferrable: check once, then wait in the triggerer."""
        try:
            if not self.deferrable:
                return super().execute(context)
            started = time.monotonic()
            first = self.poke(context)
            if first.is_done:
                return first.xcom_value
            self._defer(remaining=max(0.0, self.timeout - (time.monotonic() - started)))
        finally:
            if "hook" in self.__dict__:
                self.hook.close()

    def _defer(self, remaining: float) -> None:
        from airflow_provider_kumulos.triggers.kumulos import KumulosUserTrigger

        end_time = time.time() + remaining
        self.log.info(
            "Deferring the wait for Kumulos user %r to the triggerer: next check within %s s, "
            "then every %s s; timeout at %s (in %s s).",
            self.user_id,
            _seconds(self.poke_interval),
            _seconds(self.poke_interval),
            datetime.fromtimestamp(end_time, timezone.utc).isoformat(timespec="seconds"),
            _seconds(remaining),
        )
        self.defer(
            trigger=KumulosUserTrigger(
                user_id=self.user_id,
                kumulos_conn_id=self.kumulos_conn_id,
                poke_interval=self.poke_interval,
                attributes_match=self.attributes_match,
                end_time=end_time,
                hook_params=self.hook_params,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=remaining),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger: on success read the attributes (the event carries none), else
        raise the same error the sync path raises."""
        from airflow_provider_kumulos.triggers.kumulos import SUCCESS, TIMEOUT

        event = event or {}
        if event.get("status") == SUCCESS:
            self.log.info("The triggerer found Kumulos user %r; reading its attributes.", self.user_id)
            try:
                return self.hook.get_attributes(self.user_id)
            finally:
                self.hook.close()
        if event.get("status") == TIMEOUT:
            raise _compat.sensor_timeout(str(event.get("message", "Timed out waiting for the Kumulos user.")))
        raise KumulosError.from_dict(
            event.get("error") or {"message": f"Unexpected trigger event {event!r}."}
        )


def _matching(expected: dict[str, Any] | None) -> str:
    """`` with matching <names>`` for a log line, naming the attributes checked but not their values."""
    return f" with matching {', '.join(sorted(expected))}" if expected else ""


def _seconds(value: float) -> str:
    """Seconds for a log line: whole numbers without a fraction, others to a tenth."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
