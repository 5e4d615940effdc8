"""A fetched page as the export sees it: identifiers (and the filter's timestamps) beside the users.

Pass-through exports keep each user as the exact bytes Kumulos sent (``msgspec.Raw``) and decode
only the identifier and timestamps with a small struct, one decoder call per page; other exports
get dicts. A user without a string identifier is a malformed answer, reported as such.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_kumulos._export.projection import Projection
from airflow_provider_kumulos.exceptions import KumulosResponseError


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
def _meta_decoder() -> Any:
    """Decoder of ``[user, ...]`` keeping only the identifier and the timestamps."""
    import msgspec

    meta = msgspec.defstruct(
        "UserMeta",
        [
            ("identifier", str),
            ("updatedAt", str | None, None),
            ("lastActive", str | None, None),
            ("createdAt", str | None, None),
            ("firstActive", str | None, None),
        ],
    )
    return msgspec.json.Decoder(list[meta])  # type: ignore[valid-type]


def _malformed(page: int, problem: str) -> KumulosResponseError:
    return KumulosResponseError(
        f"Kumulos list users (GET /v2/users) page {page}: {problem}", status=200, operation="list users"
    )


def batch_from_raw(page: int, users: Sequence[Any], stamp_field: str | None) -> PageBatch:
    """Batch of ``msgspec.Raw`` users, decoding only what dedupe and filtering need.

    Users always come out on one line each: a page the server pretty-printed has its users
    re-encoded compactly (same content), so line-based formats can write the bytes as they are.
    """
    import msgspec

    if not users:
        return PageBatch(page, users, [], None if stamp_field is None else [])
    pieces = [b","] * (2 * len(users) + 1)  # "[", user, ",", user, ..., "]": one copy of the page
    pieces[0], pieces[1::2], pieces[-1] = b"[", users, b"]"
    joined = b"".join(pieces)
    if b"\n" in joined:
        users = [msgspec.Raw(msgspec.json.format(user, indent=-1)) for user in users]
    try:
        metas = _meta_decoder().decode(joined)
    except msgspec.ValidationError as exc:
        raise _malformed(page, f"a user does not have the documented shape ({exc})") from None
    identifiers = [meta.identifier for meta in metas]
    stamps = None if stamp_field is None else [getattr(meta, stamp_field) for meta in metas]
    return PageBatch(page, users, identifiers, stamps)


def batch_from_dicts(page: int, users: Sequence[dict[str, Any]], stamp_field: str | None) -> PageBatch:
    """Batch of decoded users."""
    identifiers = [user.get("identifier") for user in users]
    if not all(isinstance(identifier, str) for identifier in identifiers):
        raise _malformed(page, "a user has no string identifier")
    stamps = None
    if stamp_field is not None:
        stamps = [value if isinstance(value := user.get(stamp_field), str) else None for user in users]
    return PageBatch(page, users, identifiers, stamps)  # type: ignore[arg-type]
