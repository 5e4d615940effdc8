"""The ``_manifest.json`` of a partitioned export: written last, it is what makes the parts an export.

Readers trust only a complete manifest: it lists every part with its user count, size and
SHA-256, the csv columns and the export summary. It is published atomically after the last part,
and a fresh export removes the previous manifest before overwriting any part, so a manifest never
describes parts it did not see.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._storage import atomic_write
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PartInfo:
    """One published part file (``name`` is relative to the manifest's folder)."""

    index: int
    name: str
    users: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(data["index"]),
            name=str(data["name"]),
            users=int(data["users"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
        )


def build_manifest(
    parts: list[PartInfo], summary: dict[str, Any], options: dict[str, Any], attribute_keys: list[str] | None
) -> dict[str, Any]:
    """The manifest document."""
    return {
        "version": MANIFEST_VERSION,
        "complete": True,
        "format": options["format"],
        "compression": options["compression"],
        "options": options,
        "csv_attribute_columns": attribute_keys,
        "parts": [part.to_dict() for part in parts],
        "summary": summary,
    }


def write_json(path: ObjectStoragePath, document: dict[str, Any]) -> None:
    """Publish ``document`` as JSON at ``path`` atomically."""
    with atomic_write(path, "w") as stream:
        json.dump(document, stream, indent=2, sort_keys=True)
        stream.write("\n")


def read_manifest(path: ObjectStoragePath, parameter: str = "manifest") -> dict[str, Any]:
    """A complete manifest, or a clear error when ``path`` holds none."""
    try:
        with path.fs.open(path.path, "rb") as stream:
            document = json.load(stream)
    except FileNotFoundError:
        raise KumulosInputError(
            parameter, f"no manifest at {path}", "Point at a finished partitioned export's _manifest.json."
        ) from None
    except ValueError:
        raise KumulosInputError(
            parameter, f"{path} is not JSON", "Point at an export's _manifest.json."
        ) from None
    if not isinstance(document, dict) or document.get("complete") is not True:
        raise KumulosInputError(
            parameter,
            f"{path} is not a complete export manifest",
            "Rerun the export that should have written it.",
        )
    return document
