"""A fetched page as the export sees it: identifiers (and the filter's timestamps) beside the users.

Pass-through exports keep each user as the exact bytes Kumulos sent (``msgspec.Raw``, one line
each); the hook has already read their identifiers. Only the ``updated_since`` filter needs more:
the timestamps, decoded with a small struct in one decoder call per page. Other exports get dicts.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
def _stamp_decoder(field: str) -> Any:
    """Decoder of ``[user, ...]`` keeping only the timestamp ``field`` the filter reads."""
    import msgspec

    return msgspec.json.Decoder(list[msgspec.defstruct("UserStamp", [(field, Any, None)])])  # type: ignore[misc]


def _stamps(values: Iterable[Any]) -> list[str | None]:
    """Timestamps as the filter takes them: a value that is not a string counts as missing."""
    return [value if isinstance(value, str) else None for value in values]


def batch_from_raw(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of ``msgspec.Raw`` users, decoding the timestamps only when filtering on them."""
    users = page.users
    if stamp_field is None or not users:
        return PageBatch(page.page, users, page.identifiers, None if stamp_field is None else [])
    decoded = _stamp_decoder(stamp_field).decode(b"[" + b",".join(users) + b"]")
    return PageBatch(
        page.page, users, page.identifiers, _stamps(getattr(user, stamp_field) for user in decoded)
    )


def batch_from_dicts(page: UsersPage, stamp_field: str | None) -> PageBatch:
    """Batch of decoded users."""
    stamps = None if stamp_field is None else _stamps(user.get(stamp_field) for user in page.users)
    return PageBatch(page.page, page.users, page.identifiers, stamps)
