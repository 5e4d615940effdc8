"""A fetched page as the export sees it: identifiers (and the filter's timestamps) beside the users.

Pass-through exports keep each user as the exact bytes Kumulos sent (``msgspec.Raw``, one line
each); the hook has already read their identifiers. Only the ``updated_since`` filter needs more:
the timestamps, decoded with a small struct in one decoder call per page. Other exports get dicts.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos.exceptions import KumulosResponseError

if TYPE_CHECKING:
    from airflow_provider_kumulos._export.projection import Projection
    from airflow_provider_kumulos._policy import UsersPage


@dataclass(frozen=True)
class PageBatch:
    """One page: ``users`` (Raw or dict), their ``identifiers`` and, when filtering, ``stamps``."""

    page: int
    users: Sequence[Any]
    identifiers: list[str]
    stamps: list[str | None] | None

    def __len__(self) -> int:
        return len(self.users)

    def pick(self, positions: Sequence[int], projection: Projection | None) -> list[Any]:
        """The users at ``positions``, projected when asked."""
        users = self.users
        if projection is None:
            if len(positions) == len(users):  # every user of the page kept
                return list(users)
            return [users[i] for i in positions]
        return [projection.apply(users[i]) for i in positions]


@functools.cache
def _stamps_decoder() -> Any:
    """Decoder of ``[user, ...]`` keeping only the timestamps the filter can use."""
    import msgspec

    stamps = msgspec.defstruct(
        "UserStamps",
        [
            ("updatedAt", str | None, None),
            ("lastActive", str | None, None),
            ("createdAt", str | None, None),
            ("firstActive", str | None, None),
        ],
    )
    return msgspec.json.Decoder(list[stamps])  # type: ignore[valid-type]


def batch_from_raw(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of ``msgspec.Raw`` users, decoding the timestamps only when filtering on them."""
    import msgspec

    users = page.users
    if stamp_field is None or not users:
        return PageBatch(page.page, users, page.identifiers, None if stamp_field is None else [])
    try:
        decoded = _stamps_decoder().decode(b"[" + b",".join(users) + b"]")
    except msgspec.ValidationError as exc:
        raise KumulosResponseError(
            f"Kumulos list users (GET /v2/users) page {page.page}: a user's timestamps do not have "
            f"the documented shape ({exc})",
            status=200,
            operation="list users",
        ) from None
    return PageBatch(page.page, users, page.identifiers, [getattr(user, stamp_field) for user in decoded])


def batch_from_dicts(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of decoded users."""
    stamps = None
    if stamp_field is not None:
        stamps = [value if isinstance(value := user.get(stamp_field), str) else None for user in page.users]
    return PageBatch(page.page, page.users, page.identifiers, stamps)
