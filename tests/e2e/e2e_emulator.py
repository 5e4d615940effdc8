"""Client of the Kumulos emulator's ``/_emulator/`` admin API, for a test driving it from outside."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from e2e_procs import DeploymentError


class EmulatorAdmin:
    """Read and change the emulator's users and read its request log over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(
            base_url=f"{base_url.rstrip('/')}/_emulator", timeout=30.0, trust_env=False
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise DeploymentError(
                f"emulator {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None

    def user_ids(self) -> list[str]:
        return list(self._json("GET", "/users")["identifiers"])

    def user(self, identifier: str) -> dict[str, Any] | None:
        response = self.client.get(f"/users/{quote(identifier, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DeploymentError(f"emulator GET user {identifier!r}: HTTP {response.status_code}")
        user: dict[str, Any] = response.json()
        return user

    def add_user(self, identifier: str, attributes: dict[str, Any] | None = None) -> None:
        self._json("POST", "/users", json={"identifier": identifier, "attributes": attributes or {}})

    def requests(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/requests")["requests"])

    def close(self) -> None:
        self.client.close()
