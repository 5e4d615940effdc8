"""The Kumulos user record: its top-level fields, their kinds and meaning, declared once.

The API documents exactly these keys. The export's ``fields`` check, its csv and parquet columns
and the lineage schema all derive from :data:`USER`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserField:
    """One top-level key of a user: ``kind`` is string, timestamp (ISO-8601 text), boolean, object or array."""

    name: str
    kind: str
    description: str


#: The user object's keys, in the order the API sends them.
USER = (
    UserField("identifier", "string", "Unique user identifier"),
    UserField("attributes", "object", "The user's attribute object"),
    UserField("firstActive", "timestamp", "ISO-8601 time the user was first active"),
    UserField("lastActive", "timestamp", "ISO-8601 time the user was last active"),
    UserField("inAppEnabled", "boolean", "Whether in-app messaging is enabled for the user"),
    UserField("createdAt", "timestamp", "ISO-8601 time the user was created"),
    UserField("updatedAt", "timestamp", "ISO-8601 time the user was last updated"),
    UserField("installs", "array", "The user's app installs"),
)
USER_FIELDS = tuple(field.name for field in USER)
#: Fields holding an ISO-8601 time (what ``updated_since_field`` may name).
TIMESTAMP_FIELDS = tuple(field.name for field in USER if field.kind == "timestamp")
BOOLEAN_FIELDS = tuple(field.name for field in USER if field.kind == "boolean")
#: Fields holding JSON structure (a csv cell or a parquet string column carries them as JSON text).
JSON_FIELDS = tuple(field.name for field in USER if field.kind in ("object", "array"))
