"""Trigger of the onboarding stand-in: polls ``GET /v1/users/{id}/attributes`` until it answers 200."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from airflow.triggers.base import BaseTrigger, TriggerEvent


class UserExistsTrigger(BaseTrigger):
    """Fires once the user exists; holds only the id and the poll interval."""

    def __init__(self, user_id: str, poll_interval: float) -> None:
        super().__init__()
        self.user_id = user_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "e2e_standin_trigger.UserExistsTrigger",
            {"user_id": self.user_id, "poll_interval": self.poll_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection("kumulos_default")
        url = f"{conn.host.rstrip('/')}/v1/users/{quote(self.user_id, safe='')}/attributes"
        async with httpx.AsyncClient(auth=(conn.login, conn.password), timeout=10) as client:
            while (await client.get(url)).status_code != 200:
                await asyncio.sleep(self.poll_interval)
        yield TriggerEvent({"user_id": self.user_id})
