"""The units a bulk write passes along: a record as read, a validated job, a failure, and the check between.

A leaf of ``_bulk``: every other stage (sources, runner, failures file, report, sync) speaks these
types, and this module imports none of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.exceptions import KumulosError, KumulosInputError

#: Outcomes a ``send`` callable reports for a record that did not fail.
SUCCEEDED = "succeeded"
MISSING = "missing"
#: Longest error message quoted in the summary.
MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as read: where it came from, its identifier and attributes, or why it is unusable.

    ``source`` is the record's original text: the raw bytes of a JSONL line; for a CSV row or a list
    item that could not be read, its CSV or JSON text. So a failure loses nothing of the input.
    """

    where: str
    identifier: object
    attributes: object = None
    problem: KumulosInputError | None = None
    source: bytes | str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A validated record, ready to send."""

    where: str
    identifier: str
    attributes: Mapping[str, Any] | None


@dataclass(frozen=True)
class Failure:
    """A record that was not applied, and why."""

    where: str
    identifier: object
    attributes: object
    error: KumulosError
    #: The input's original text, for a record that failed before it could be sent (see SourceRecord).
    source: bytes | str | None = None

    def brief(self) -> dict[str, Any]:
        """The summary's view: where, who, status, error class and message (never attribute values)."""
        message = str(self.error)
        return {
            "identifier": self.identifier
            if isinstance(self.identifier, str)
            else repr(self.identifier)[:100],
            "where": self.where,
            "status": self.error.status,
            "error": type(self.error).__name__,
            "message": message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "...",
        }

    def line(self, with_attributes: bool) -> bytes:
        """One failures-file line, shaped like an input record plus an ``error`` object."""
        entry: dict[str, Any] = {"identifier": self.identifier}
        if with_attributes:
            entry["attributes"] = self.attributes
        if self.source is not None:
            source = self.source
            text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
            entry["source_line"] = text.rstrip("\r\n")
        entry["error"] = {
            "type": type(self.error).__name__,
            "status": self.error.status,
            "message": str(self.error),
            "where": self.where,
        }
        try:
            text = json.dumps(entry, ensure_ascii=False, default=str)
        except (ValueError, RecursionError):  # circular or absurdly deep input: keep the error, drop the rest
            text = json.dumps({**entry, "identifier": str(self.identifier), "attributes": None}, default=str)
        return text.encode("utf-8") + b"\n"


def prepare(record: SourceRecord, with_attributes: bool) -> Job:
    """Validate ``record`` with the API's rules; raise ``KumulosInputError`` naming what is wrong."""
    if record.problem is not None:
        raise record.problem
    identifier = _policy.check_user_id(record.identifier, f"{record.where} identifier")
    if not with_attributes:
        return Job(record.where, identifier, None)
    _policy.check_attributes(record.attributes, f"{record.where} attributes")
    return Job(record.where, identifier, cast("Mapping[str, Any]", record.attributes))
