"""KumulosUserTrigger: wait in the triggerer, without holding a worker slot, until a user exists.

The trigger holds only serialisable arguments and its wait loop; every request goes through
:class:`~airflow_provider_kumulos.hooks.kumulos.KumulosCRMAsyncHook`, which shares one client and
one 429 gate among the triggers waiting on the same connection.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import KumulosError
from airflow_provider_kumulos.hooks._params import SHARED_PARAMS, check_hook_params
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMAsyncHook

#: ``status`` values of the single event the trigger fires.
SUCCESS, TIMEOUT, ERROR = "success", "timeout", "error"


class KumulosUserTrigger(BaseTrigger):
    """Poll a user's attributes every ``poke_interval`` seconds until the user exists (and matches).

    Fires exactly one event: ``{"status": "success", "user_id": ...}`` (no attribute values: Airflow
    logs every event, and attributes are user data); ``{"status": "timeout", "message": ...}`` once
    ``end_time`` (epoch seconds) passes; or ``{"status": "error", "error": {...}}`` (the error's
    :meth:`~airflow_provider_kumulos.exceptions.KumulosError.to_dict`) for a failure that waiting
    cannot fix. A missing user, or a transient failure that outlived the connection's retries, means
    "not yet". Credentials are read inside :meth:`run`, never serialised.

    :param user_id: the Kumulos user identifier to wait for.
    :param kumulos_conn_id: Airflow connection of type ``kumulos``.
    :param poke_interval: seconds between checks; the first comes at a random moment within it.
    :param attributes_match: attribute values the user must also have (None: any).
    :param end_time: epoch seconds after which the trigger gives up with a timeout event.
    :param hook_params: arguments for :class:`~airflow_provider_kumulos.hooks.kumulos.KumulosCRMAsyncHook`
        (``timeout``, ``max_retries``...: each overrides the connection extra of the same name);
        primitives, serialised with the trigger. Bad ones fire an error event before any request.
    """

    def __init__(
        self,
        user_id: str,
        kumulos_conn_id: str = KumulosCRMAsyncHook.default_conn_name,
        poke_interval: float = 60.0,
        attributes_match: dict[str, Any] | None = None,
        end_time: float | None = None,
        hook_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.user_id = user_id
        self.kumulos_conn_id = kumulos_conn_id
        self.poke_interval = float(poke_interval)
        self.attributes_match = attributes_match
        self.end_time = end_time
        self.hook_params = {} if hook_params is None else hook_params

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive kwargs (no credentials: only the connection id)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "user_id": self.user_id,
                "kumulos_conn_id": self.kumulos_conn_id,
                "poke_interval": self.poke_interval,
                "attributes_match": self.attributes_match,
                "end_time": self.end_time,
                "hook_params": self.hook_params,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done, then yield the one event; the hook lets go of its client on every exit path."""
        try:
            payload = await self._wait()
        except KumulosError as exc:
            payload = {"status": ERROR, "error": exc.to_dict()}
        except Exception as exc:
            self.log.exception("Waiting for Kumulos user failed unexpectedly")
            payload = {"status": ERROR, "error": {"error": type(exc).__name__, "message": str(exc)}}
        yield TriggerEvent(payload)

    async def _wait(self) -> dict[str, Any]:
        """Check every ``poke_interval`` seconds until done or past ``end_time``.

        The first check comes at a random moment of the first interval (a deferring sensor has just
        checked), so that sensors deferred together spread their checks evenly instead of polling
        in lockstep: a burst of checks stalls the triggerer's event loop (in the garbage collector
        too, which then finds hundreds of requests in flight) and meets rate limits together.
        """
        _policy.check_user_id(self.user_id)
        expected = _policy.check_attributes_match(self.attributes_match)
        hook_params = check_hook_params(self.hook_params, SHARED_PARAMS)
        loop = asyncio.get_running_loop()
        async with KumulosCRMAsyncHook(self.kumulos_conn_id, **hook_params) as hook:
            next_check = loop.time() + random.uniform(0, self.poke_interval)
            while True:
                remaining = None if self.end_time is None else self.end_time - time.time()
                delay = next_check - loop.time()
                await asyncio.sleep(max(0.0, delay if remaining is None else min(delay, remaining)))
                attributes = await self._attributes_or_none(hook)
                if attributes is not None and _policy.attributes_satisfy(attributes, expected):
                    self.log.info("Found Kumulos user %r.", self.user_id)
                    return {"status": SUCCESS, "user_id": self.user_id}
                if self.end_time is not None and self.end_time - time.time() <= 0:
                    return {
                        "status": TIMEOUT,
                        "message": f"Kumulos user {self.user_id!r} did not appear"
                        + (" with the expected attributes" if expected else "")
                        + " before the timeout.",
                    }
                next_check = _next_check(next_check, self.poke_interval, loop.time())

    async def _attributes_or_none(self, hook: KumulosCRMAsyncHook) -> dict[str, Any] | None:
        """The user's attributes, or None while waiting should go on (missing user, transient failure)."""
        try:
            return await hook.find_attributes(self.user_id)
        except KumulosError as exc:
            if not _policy.keeps_waiting(exc):
                raise
            self.log.warning("Kumulos still failing after retries, will check again: %s", exc)
        return None


def _next_check(previous: float, interval: float, now: float) -> float:
    """The first point of the ``previous + k * interval`` cadence after ``now`` (k >= 1).

    Keeping the cadence, rather than sleeping ``interval`` after each answer, keeps triggers that
    started spread out spread out, and skips checks that a long retry made overdue.
    """
    steps = max(1, math.floor((now - previous) / interval) + 1) if interval > 0 else 1
    return previous + steps * interval
