"""Resume a partitioned export after a crash, from Airflow's task state store (Airflow >= 3.3).

After each published part the export saves a checkpoint: the parts so far (name, users, size,
SHA-256), the page and position inside it where the next part starts, the running counts, the csv
columns, and a fingerprint of the options. A retry with the same options verifies those parts
(size and SHA-256 of the stored bytes) and replays their identifiers into the dedupe set, which
is rebuilt exactly rather than stored, then continues at the saved page: at most the part that
was in progress is fetched twice. Anything that does not match starts the export over. The
checkpoint is removed once the export succeeds, so a later rerun of the task starts fresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._export.counts import ExportCounts
from airflow_provider_kumulos._export.formats import read_identifiers
from airflow_provider_kumulos._export.manifest import PartInfo
from airflow_provider_kumulos._export.sinks import stored_digest

if TYPE_CHECKING:
    from airflow_provider_kumulos._dedupe import SeenIdentifiers
    from airflow_provider_kumulos._export.formats import ExportFormat


STATE_KEY = "kumulos_export_checkpoint"


@dataclass
class Checkpoint:
    """Where a partitioned export stands after its last published part."""

    fingerprint: str
    parts: list[PartInfo]
    next_page: int
    skip: int
    counts: ExportCounts
    attribute_keys: list[str] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the state store."""
        return {
            "fingerprint": self.fingerprint,
            "parts": [part.to_dict() for part in self.parts],
            "next_page": self.next_page,
            "skip": self.skip,
            "counts": self.counts.to_dict(),
            "attribute_keys": self.attribute_keys,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        """Inverse of :meth:`to_dict`."""
        return cls(
            fingerprint=str(data["fingerprint"]),
            parts=[PartInfo.from_dict(part) for part in data["parts"]],
            next_page=int(data["next_page"]),
            skip=int(data["skip"]),
            counts=ExportCounts.from_dict(data["counts"]),
            attribute_keys=data.get("attribute_keys"),
        )


class ResumeState:
    """Load, save and clear this task's checkpoint; does nothing without a state store."""

    def __init__(self, store: Any | None, fingerprint: str) -> None:
        self.store = store
        self.fingerprint = fingerprint

    @property
    def enabled(self) -> bool:
        """Whether checkpoints are kept (a state store exists)."""
        return self.store is not None

    def load(self) -> Checkpoint | None:
        """The saved checkpoint of an identical export, if any."""
        if self.store is None:
            return None
        data = self.store.get(STATE_KEY)
        if not isinstance(data, dict) or data.get("fingerprint") != self.fingerprint:
            return None
        try:
            return Checkpoint.from_dict(data)
        except (KeyError, TypeError, ValueError):
            return None

    def save(self, checkpoint: Checkpoint) -> None:
        """Record a checkpoint (after a part was published)."""
        if self.store is not None:
            self.store.set(STATE_KEY, checkpoint.to_dict())

    def clear(self) -> None:
        """Forget the checkpoint (export finished, or its parts were discarded)."""
        if self.store is not None:
            self.store.delete(STATE_KEY)


def replay_parts(
    parts: list[PartInfo], directory: Any, fmt: ExportFormat, seen: SeenIdentifiers
) -> str | None:
    """Verify stored parts and add their identifiers to ``seen``; returns why they cannot be used, or None."""
    for part in parts:
        path = directory / part.name
        try:
            nbytes, sha256 = stored_digest(path)
        except FileNotFoundError:
            return f"{part.name} is missing"
        if (nbytes, sha256) != (part.bytes, part.sha256):
            return f"{part.name} changed since it was written"
        for identifier in read_identifiers(path, fmt.name, fmt.compression):
            seen.add(identifier)
    return None
