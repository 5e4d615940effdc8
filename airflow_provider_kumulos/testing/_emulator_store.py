"""The emulator's user set: generated users plus overrides, paging order, page cache, drift.

Generated users are stored as nothing but their position in ``_order`` (an int index); a user
that is written to (PUT, ``add_user``...) is materialized as a dict in ``_overrides``. Override
dicts are replaced, never mutated, so a page can be rendered outside the lock from references
taken under it.
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_kumulos.testing._emulator_data import (
    UserFactory,
    json_text,
    named_identifier,
    parse_named_identifier,
)

#: Top-level user fields besides identifier and attributes (``add_user`` accepts these).
USER_FIELDS = ("firstActive", "lastActive", "inAppEnabled", "createdAt", "updatedAt", "installs")


def now_iso() -> str:
    """Current UTC time in the API's ISO-8601 form (``+00:00``, whole seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def new_user(identifier: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """A user as the API creates it on PUT: no activity yet and no installs."""
    now = now_iso()
    return {
        "identifier": identifier,
        "attributes": attributes,
        "firstActive": None,
        "lastActive": None,
        "inAppEnabled": False,
        "createdAt": now,
        "updatedAt": now,
        "installs": [],
    }


def attribute_object(attributes: Any) -> dict[str, Any]:
    """``attributes`` as a plain dict; TypeError unless it is a mapping with string keys."""
    if not isinstance(attributes, Mapping) or not all(isinstance(key, str) for key in attributes):
        raise TypeError(f"attributes must be an object with string keys, got {type(attributes).__name__}")
    return dict(attributes)


@dataclass
class _Drift:
    """A pending change of the user set, applied after ``remaining`` more users-page answers."""

    remaining: int
    add: list[str] | int
    remove: list[str] | int


class UserStore:
    """Thread-safe user state of one emulator."""

    #: Upper bound on cached page bytes; pages beyond it are rendered on every request.
    PAGE_CACHE_BYTES = 128 * 1024 * 1024

    def __init__(self, users: int, seed: int) -> None:
        if users < 0:
            raise ValueError("users must be >= 0")
        self._lock = threading.RLock()
        self._factory = UserFactory(seed)
        self._base_count = users
        self._anonymous = self._factory.anonymous_identifiers(users)
        self._anonymous_index = {ident: i for i, ident in self._anonymous.items()}
        self._removed = bytearray(users)
        # Paging order: int = generated user at that index, str = identifier of a created user.
        self._order: list[int | str] = list(range(users))
        self._overrides: dict[str, dict[str, Any]] = {}
        # Users whose attribute set was deleted: a repeated DELETE finds nothing and gets 400.
        self._attributes_deleted: set[str] = set()
        self._next_generated = users
        self._rng = random.Random(seed)
        self._drifts: list[_Drift] = []
        self._version = 0
        self._cache: dict[tuple[int, int], bytes] = {}
        self._cache_bytes = 0

    # -- look-ups -------------------------------------------------------------------------

    def _identifier(self, entry: int | str) -> str:
        """Identifier of an ``_order`` entry."""
        if isinstance(entry, str):
            return entry
        return self._anonymous.get(entry) or named_identifier(entry)

    def _base_index(self, identifier: str) -> int | None:
        """Index of the live generated user with this identifier, if any."""
        index = parse_named_identifier(identifier)
        if index is None:
            index = self._anonymous_index.get(identifier)
        elif index in self._anonymous:
            return None
        if index is None or index >= self._base_count or self._removed[index]:
            return None
        return index

    def _current(self, identifier: str) -> dict[str, Any] | None:
        """The user (shared reference for overrides, fresh dict when generated) or None."""
        user = self._overrides.get(identifier)
        if user is not None:
            return user
        index = self._base_index(identifier)
        if index is None:
            return None
        return self._factory.user(index, identifier, index in self._anonymous)

    def exists(self, identifier: str) -> bool:
        """Whether the user exists."""
        with self._lock:
            return identifier in self._overrides or self._base_index(identifier) is not None

    def get_user(self, identifier: str) -> dict[str, Any] | None:
        """Deep copy of the user, or None."""
        with self._lock:
            user = self._current(identifier)
        return copy.deepcopy(user)

    def get_attributes(self, identifier: str) -> dict[str, Any] | None:
        """Deep copy of the user's attributes, or None when the user does not exist."""
        with self._lock:
            user = self._current(identifier)
        return None if user is None else copy.deepcopy(user["attributes"])

    def user_ids(self) -> list[str]:
        """Identifiers in paging order."""
        with self._lock:
            return [self._identifier(entry) for entry in self._order]

    def users(self) -> list[dict[str, Any]]:
        """Deep copies of all users in paging order."""
        with self._lock:
            snapshot = self._snapshot(self._order)
        user = self._factory.user
        return [
            copy.deepcopy(item) if isinstance(item, dict) else user(*item, item[0] in self._anonymous)
            for item in snapshot
        ]

    def count(self) -> int:
        """Number of users."""
        with self._lock:
            return len(self._order)

    # -- writes ---------------------------------------------------------------------------

    def _changed(self) -> None:
        """Invalidate rendered pages after any change of state (lock held)."""
        self._version += 1
        self._cache.clear()
        self._cache_bytes = 0

    def _insert(self, user: dict[str, Any], position: int | None = None) -> None:
        """Store a new user at the end of the paging order or at ``position`` (lock held)."""
        ident = user["identifier"]
        self._overrides[ident] = user
        if position is None:
            self._order.append(ident)
        else:
            self._order.insert(position, ident)
        self._changed()

    def put_attributes(self, identifier: str, attributes: dict[str, Any]) -> dict[str, Any]:
        """Replace the attribute set, creating the user if missing; returns the stored user."""
        with self._lock:
            self._attributes_deleted.discard(identifier)
            user = self._current(identifier)
            if user is None:
                user = new_user(identifier, copy.deepcopy(attributes))
                self._insert(user)
            else:
                user = {**user, "attributes": copy.deepcopy(attributes), "updatedAt": now_iso()}
                self._overrides[identifier] = user
                self._changed()
            return user

    def associate_share(
        self,
        share: float,
        seed: int,
        attributes: Mapping[str, Any] | Callable[[str, dict[str, Any]], Mapping[str, Any]],
    ) -> list[str]:
        """Replace the attribute sets of a seeded random ``share`` of the users, as the app does;
        ``attributes`` is the new set, or makes it from the identifier and the current set.
        Returns the identifiers written, in paging order."""
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError(f"share must be a number from 0 to 1, got {share!r}")
        with self._lock:
            picked = random.Random(seed).sample(range(len(self._order)), round(share * len(self._order)))
            identifiers = [self._identifier(self._order[position]) for position in sorted(picked)]
            for identifier in identifiers:
                new = (
                    attributes(identifier, self.get_attributes(identifier) or {})
                    if callable(attributes)
                    else attributes
                )
                self.put_attributes(identifier, attribute_object(new))
        return identifiers

    def delete_attributes(self, identifier: str) -> bool:
        """Clear the attribute set; False when the user does not exist or its attribute set was
        already deleted (so a retried DELETE that had succeeded sees 400, as the API does)."""
        with self._lock:
            user = self._current(identifier)
            if user is None or identifier in self._attributes_deleted:
                return False
            self._attributes_deleted.add(identifier)
            self._overrides[identifier] = {**user, "attributes": {}, "updatedAt": now_iso()}
            self._changed()
            return True

    def add_user(
        self, identifier: str, attributes: dict[str, Any] | None, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Create a user like PUT does, with ``fields`` overriding top-level fields."""
        unknown = set(fields) - set(USER_FIELDS)
        if unknown:
            raise TypeError(f"unknown user fields: {sorted(unknown)}; known: {list(USER_FIELDS)}")
        with self._lock:
            if self.exists(identifier):
                raise ValueError(f"user {identifier!r} already exists")
            user = {**new_user(identifier, attributes or {}), **fields}
            user = copy.deepcopy(user)
            self._insert(user)
            return copy.deepcopy(user)

    def remove_user(self, identifier: str) -> None:
        """Delete the user entirely; KeyError when it does not exist."""
        with self._lock:
            index = self._base_index(identifier)
            if index is not None:
                self._removed[index] = 1
                self._order.remove(index)
            elif identifier in self._overrides:
                self._order.remove(identifier)
            else:
                raise KeyError(identifier)
            self._overrides.pop(identifier, None)
            self._attributes_deleted.discard(identifier)
            self._changed()

    # -- drift ----------------------------------------------------------------------------

    def schedule_drift(self, after_requests: int, add: list[str] | int, remove: list[str] | int) -> None:
        """Change the user set once ``after_requests`` more users pages have been answered."""
        if after_requests < 1:
            raise ValueError("after_requests must be >= 1")
        with self._lock:
            self._drifts.append(_Drift(after_requests, add, remove))

    def clear_drift(self) -> None:
        """Forget pending drifts."""
        with self._lock:
            self._drifts.clear()

    def users_page_answered(self) -> None:
        """Count one answered users page and apply the drifts that fall due."""
        with self._lock:
            due = []
            for drift in self._drifts:
                drift.remaining -= 1
                if drift.remaining <= 0:
                    due.append(drift)
            for drift in due:
                self._drifts.remove(drift)
                self._apply_drift(drift)

    def _apply_drift(self, drift: _Drift) -> None:
        """Remove then add users; generated ones go to random positions so pages shift (lock held)."""
        if isinstance(drift.remove, int):
            for _ in range(min(drift.remove, len(self._order))):
                self.remove_user(self._identifier(self._rng.choice(self._order)))
        else:
            for ident in drift.remove:
                if self.exists(ident):
                    self.remove_user(ident)
        new_ids: Iterable[str | None] = [None] * drift.add if isinstance(drift.add, int) else drift.add
        for wanted in new_ids:
            index = self._next_generated
            while wanted is None and self.exists(named_identifier(index)):
                index += 1
            self._next_generated = index + 1
            ident = wanted or named_identifier(index)
            if not self.exists(ident):
                user = self._factory.user(index, ident, anonymous=False)
                self._insert(user, self._rng.randrange(len(self._order) + 1))

    # -- pages ----------------------------------------------------------------------------

    def _snapshot(self, entries: list[int | str]) -> list[tuple[int, str] | dict[str, Any]]:
        """Per entry: ``(index, identifier)`` to generate, or the stored override (lock held)."""
        overrides = self._overrides
        snapshot: list[tuple[int, str] | dict[str, Any]] = []
        for entry in entries:
            ident = self._identifier(entry)
            if isinstance(entry, int) and ident not in overrides:
                snapshot.append((entry, ident))
            else:
                snapshot.append(overrides[ident])
        return snapshot

    def page(self, current_page: int, per_page: int) -> bytes:
        """The users page body, rendered once per state version and cached within budget."""
        key = (current_page, per_page)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                return cached
            version, total = self._version, len(self._order)
            start = (current_page - 1) * per_page
            snapshot = self._snapshot(self._order[start : start + per_page])
        anonymous, fragment = self._anonymous, self._factory.fragment
        parts = [
            json_text(item) if isinstance(item, dict) else fragment(item[0], item[1], item[0] in anonymous)
            for item in snapshot
        ]
        body = f'{{"users":[{",".join(parts)}],"totalUsers":{total},"currentPage":{current_page}}}'.encode()
        with self._lock:
            if version == self._version and self._cache_bytes + len(body) <= self.PAGE_CACHE_BYTES:
                self._cache[key] = body
                self._cache_bytes += len(body)
        return body
