"""Client of the Kumulos emulator's ``/_emulator/`` admin API, for a test driving it from outside."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from e2e_leaks import personal_values
from e2e_procs import DeploymentError


class EmulatorAdmin:
    """Read and change the emulator's users and read its request log over HTTP.

    Remembers the personal attribute values of the users it creates (``given``), so the log scan
    still knows them after a DAG deleted the attributes.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.given: set[str] = set()
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
        self.given |= personal_values(attributes)
        self._json("POST", "/users", json={"identifier": identifier, "attributes": attributes or {}})

    def associate(self, identifier: str, attributes: dict[str, Any]) -> None:
        """Play the app: replace the user's attribute set as its SDK does (not an API request)."""
        self._json("POST", "/associate", json={"identifier": identifier, "attributes": attributes})

    def requests(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/requests")["requests"])

    def attributes_by_user(self, api_key: str, server_key: str) -> dict[str, Any]:
        """Every user's attributes, read as a client does (``GET /v2/users`` pages of 1,000)."""
        found: dict[str, Any] = {}
        with httpx.Client(base_url=self.base_url, auth=(api_key, server_key), trust_env=False) as api:
            page = 1
            while True:
                response = api.get("/v2/users", params={"currentPage": page, "numberPerPage": 1000})
                if response.status_code != 200:
                    raise DeploymentError(f"emulator users page {page}: HTTP {response.status_code}")
                users = response.json()["users"]
                found.update((user["identifier"], user.get("attributes")) for user in users)
                if len(users) < 1000:
                    return found
                page += 1

    def clear_requests(self) -> None:
        self._json("DELETE", "/requests")

    def stats(self) -> dict[str, Any]:
        """Request counts by ``"METHOD STATUS"`` and injected faults by kind."""
        return dict(self._json("GET", "/stats"))

    def set_latency(self, seconds: float) -> None:
        self._json("POST", "/faults", json={"latency": seconds})

    def start_outage(self, seconds: float, status: int = 503) -> None:
        """Every API request is answered ``status`` for the next ``seconds``."""
        self._json("POST", "/faults", json={"outage": {"seconds": seconds, "status": status}})

    def clear_faults(self) -> None:
        """No outage, no faults, no added latency."""
        self._json("DELETE", "/faults")

    def close(self) -> None:
        self.client.close()
