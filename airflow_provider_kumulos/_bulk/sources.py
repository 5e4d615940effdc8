"""Streamed record sources for bulk attribute writes: in-memory lists, JSONL, CSV and plain-text files.

Files are read line by line from any object-storage path (local, ``s3://``...), decompressed on the
fly by fsspec when the name ends in ``.gz``, so memory stays flat however long the file is. Readers only parse:
each :class:`SourceRecord` carries what was read, or the problem that kept it from being read, and
the bulk runner validates it against the API's rules.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_kumulos._bulk.records import SourceRecord
from airflow_provider_kumulos._checks import yes_no
from airflow_provider_kumulos._storage import resolve_path
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    import os

    from airflow.sdk import ObjectStoragePath

#: File formats by name suffix (before an optional ``.gz``).
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".txt": "txt"}
#: How a CSV column may be typed (``attribute_types`` values).
ATTRIBUTE_TYPES = ("str", "int", "float", "bool", "json")
#: Key of the attribute object in records and JSONL lines.
ATTRIBUTES_KEY = "attributes"

_INTEGER = re.compile(r"[+-]?[0-9]+")
#: Errors that make the rest of a file unreadable (as opposed to one bad line).
_UNREADABLE = (UnicodeDecodeError, gzip.BadGzipFile, EOFError, zlib.error, csv.Error)


# --- in-memory sources ------------------------------------------------------------------------


def from_records(
    records: Iterable[object], *, parameter: str, identifier_key: str, with_attributes: bool
) -> Iterator[SourceRecord]:
    """Records given as mappings ``{identifier_key: ..., "attributes": {...}}`` (extra keys ignored)."""
    for index, record in enumerate(records):
        where = f"{parameter}[{index}]"
        if isinstance(record, Mapping):
            yield _from_mapping(where, record, identifier_key, with_attributes)
        else:
            shape = (
                f"{{{identifier_key!r}: ..., 'attributes': {{...}}}}" if with_attributes else "an identifier"
            )
            yield SourceRecord(
                where,
                None,
                None,
                KumulosInputError(
                    where, f"expected an object, got {type(record).__name__}", f"Pass {shape}."
                ),
                _json_text(record),
            )


def _json_text(value: object) -> str:
    """``value`` as JSON text (values JSON cannot carry as their ``str()``), to keep an unusable item."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # circular or absurdly deep
        return str(value)


def from_identifiers(user_ids: Iterable[object], *, parameter: str) -> Iterator[SourceRecord]:
    """Bare user identifiers (validated later, like every identifier)."""
    for index, user_id in enumerate(user_ids):
        yield SourceRecord(f"{parameter}[{index}]", user_id)


def _from_mapping(
    where: str,
    record: Mapping[Any, Any],
    identifier_key: str,
    with_attributes: bool,
    source: bytes | None = None,
) -> SourceRecord:
    required = (identifier_key, ATTRIBUTES_KEY) if with_attributes else (identifier_key,)
    missing = [key for key in required if key not in record]
    attributes = record.get(ATTRIBUTES_KEY) if with_attributes else None
    if not missing:
        return SourceRecord(where, record[identifier_key], attributes, None, source)
    problem = KumulosInputError(
        where,
        f"it has no {' and no '.join(repr(key) for key in missing)} key",
        f"Give every record {' and '.join(repr(key) for key in required)}.",
    )
    text = source if source is not None else _json_text(record)
    return SourceRecord(where, record.get(identifier_key), attributes, problem, text)


# --- files ------------------------------------------------------------------------------------


def detect_format(path: ObjectStoragePath, source_format: str | None, allowed: tuple[str, ...]) -> str:
    """The format of ``path``: ``source_format`` (the operator checked it), else its suffix's (before ``.gz``)."""
    if source_format is not None:
        return source_format
    suffixes = [suffix.lower() for suffix in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    named = suffixes[-2 if gzipped else -1] if len(suffixes) > (1 if gzipped else 0) else None
    detected = SUFFIX_FORMATS.get(named or "")
    if detected not in allowed:
        suffixes_allowed = ", ".join(f".{fmt}" for fmt in allowed)
        raise KumulosInputError(
            "source_format",
            f"the format of {path.name!r} cannot be told from its name",
            f"Name the file {suffixes_allowed} (optionally + .gz) or pass source_format, one of "
            f"{', '.join(allowed)}.",
        )
    return str(detected)


@contextlib.contextmanager
def open_source(
    path: str | os.PathLike[str] | ObjectStoragePath,
    *,
    source_format: str | None,
    allowed_formats: tuple[str, ...],
    identifier_column: str,
    attribute_types: Mapping[str, str] | None = None,
    with_attributes: bool,
    parameter: str = "source_path",
) -> Iterator[Iterator[SourceRecord]]:
    """Open ``path`` and yield an iterator over its records, read lazily line by line.

    Everything that can be checked without reading the whole file (existence, format, CSV header
    against ``identifier_column`` and ``attribute_types``) is checked here, before the caller sends
    anything. A line that cannot be parsed becomes a record with a ``problem``; a file that stops
    being readable part-way (bad gzip, not UTF-8) raises ``KumulosInputError``.
    """
    from fsspec.core import OpenFile

    target = resolve_path(path, parameter)
    fmt = detect_format(target, source_format, allowed_formats)
    if attribute_types and fmt != "csv":
        raise KumulosInputError(
            "attribute_types",
            f"it only applies to CSV sources, and {target.name!r} is {fmt}",
            "Remove attribute_types: JSONL values keep their JSON types.",
        )
    with contextlib.ExitStack() as stack:
        # fsspec decompresses by the name's suffix (.gz), and closes the file under the codec too.
        opened = OpenFile(target.fs, target.path, "rb", compression="infer")
        try:
            stream: IO[bytes] = stack.enter_context(opened)
        except (FileNotFoundError, IsADirectoryError):
            raise KumulosInputError(
                parameter, f"{target} does not exist or is not a file", "Check the path and its connection."
            ) from None
        label = f"{parameter} line"
        try:
            if fmt == "jsonl":
                records = _jsonl_records(stream, label, identifier_column, with_attributes)
            else:
                text = stack.enter_context(io.TextIOWrapper(stream, encoding="utf-8-sig", newline=""))
                if fmt == "csv":
                    records = _csv_records(
                        text, label, identifier_column, attribute_types or {}, with_attributes
                    )
                else:
                    records = _text_records(text, label)
        except _UNREADABLE as exc:
            raise _unreadable(parameter, fmt, "the start", exc) from None
        yield _guard(records, parameter, fmt)


def _guard(records: Iterator[SourceRecord], parameter: str, fmt: str) -> Iterator[SourceRecord]:
    """Turn a file that stops being readable into one clear input error."""
    last = "the start"
    try:
        for record in records:
            last = record.where
            yield record
    except _UNREADABLE as exc:
        raise _unreadable(parameter, fmt, last, exc) from None


def _unreadable(parameter: str, fmt: str, last: str, exc: Exception) -> KumulosInputError:
    return KumulosInputError(
        parameter,
        f"it cannot be read after {last} ({type(exc).__name__})",
        f"Check that the file is complete, UTF-8 encoded and valid {fmt}.",
    )


def _jsonl_records(
    stream: IO[bytes], label: str, identifier_key: str, with_attributes: bool
) -> Iterator[SourceRecord]:
    # readline rather than iteration: Airflow 3.1's ObjectStoragePath file wrapper is not iterable.
    for number, line in enumerate(iter(stream.readline, b""), 1):
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)
        if not line.strip():
            continue
        where = f"{label} {number}"
        try:
            value = json.loads(line.rstrip(b"\r\n"))  # so the decoder's own line count stays 1
        except ValueError as exc:
            reason = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            problem = KumulosInputError(
                where, f"it is not valid JSON ({reason})", "Write one JSON object per line."
            )
            yield SourceRecord(where, None, None, problem, line)
            continue
        if isinstance(value, dict):
            yield _from_mapping(where, value, identifier_key, with_attributes, line)
        else:
            problem = KumulosInputError(
                where,
                f"expected a JSON object, got {type(value).__name__}",
                "Write one JSON object per line.",
            )
            yield SourceRecord(where, None, None, problem, line)


def _text_records(text: IO[str], label: str) -> Iterator[SourceRecord]:
    for number, line in enumerate(text, 1):
        identifier = line.rstrip("\r\n")
        if identifier.strip():
            yield SourceRecord(f"{label} {number}", identifier)


# --- CSV --------------------------------------------------------------------------------------


def _to_int(cell: str) -> int:
    if not _INTEGER.fullmatch(cell.strip()):
        raise ValueError("expected a whole number such as 42")
    return int(cell)


def _to_float(cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError("expected a number such as 4.2") from None
    if not math.isfinite(value):
        raise ValueError("NaN and Infinity cannot be sent as JSON")
    return value


def _to_bool(cell: str) -> bool:
    value = yes_no(cell)
    if value is None:
        raise ValueError("expected true/false, yes/no or 1/0")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} cannot be sent as JSON")


def _to_json(cell: str) -> Any:
    try:
        return json.loads(cell, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected JSON text ({exc.msg} at character {exc.pos})") from None


#: Converters raise ValueError with a message that never quotes the cell: messages reach logs and XCom.
_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "json": _to_json,
}


def check_attribute_types(attribute_types: object) -> dict[str, str]:
    """Validate ``attribute_types`` (CSV column -> type name) and return it as a plain dict."""
    if attribute_types is None:
        return {}
    if not isinstance(attribute_types, Mapping):
        raise KumulosInputError(
            "attribute_types",
            f"expected a mapping of column name to type, got {type(attribute_types).__name__}",
            'Pass e.g. {"age": "int", "vip": "bool"}.',
        )
    bad = {column: kind for column, kind in attribute_types.items() if kind not in _CONVERTERS}
    if bad:
        column, kind = next(iter(bad.items()))
        raise KumulosInputError(
            "attribute_types",
            f"column {column!r} has the unknown type {kind!r}",
            f"Use one of {', '.join(ATTRIBUTE_TYPES)}.",
        )
    return dict(attribute_types)


def _csv_records(
    text: IO[str],
    label: str,
    identifier_column: str,
    attribute_types: Mapping[str, str],
    with_attributes: bool,
) -> Iterator[SourceRecord]:
    """Check the header now; return the lazily read data rows."""
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise KumulosInputError(
            "source_path", "the CSV file is empty", "Start it with a header row naming its columns."
        ) from None
    if len(set(header)) != len(header):
        repeated = sorted({name for name in header if header.count(name) > 1})
        raise KumulosInputError(
            "source_path", f"the CSV header repeats column(s) {repeated}", "Give every column a unique name."
        )
    if identifier_column not in header:
        raise KumulosInputError(
            "identifier_column",
            f"column {identifier_column!r} is not in the CSV header {header[:20]}",
            "Set identifier_column to the column that holds user identifiers.",
        )
    typed = set(attribute_types)
    unknown = sorted((typed - set(header)) | (typed & {identifier_column}))
    if unknown:
        raise KumulosInputError(
            "attribute_types",
            f"column(s) {unknown} are not attribute columns of the CSV header {header[:20]}",
            "Type only columns that exist, other than the identifier column.",
        )
    id_index = header.index(identifier_column)
    columns = (
        [
            (index, name, attribute_types.get(name, "str"))
            for index, name in enumerate(header)
            if index != id_index
        ]
        if with_attributes
        else []
    )
    return _csv_rows(reader, label, len(header), id_index, columns)


def _csv_rows(
    reader: Any, label: str, width: int, id_index: int, columns: list[tuple[int, str, str]]
) -> Iterator[SourceRecord]:
    for row in reader:
        if not row:
            continue
        where = f"{label} {reader.line_num}"
        if len(row) != width:
            mismatch = KumulosInputError(
                where,
                f"it has {len(row)} fields, the header has {width}",
                "Quote values that contain commas.",
            )
            identifier = row[id_index] if id_index < len(row) else None
            yield SourceRecord(where, identifier, None, mismatch, _csv_text(row))
            continue
        if not columns:
            yield SourceRecord(where, row[id_index])
            continue
        attributes: dict[str, Any] = {}
        problem: KumulosInputError | None = None
        for index, name, kind in columns:
            cell = row[index]
            if cell == "":
                continue
            try:
                attributes[name] = _CONVERTERS[kind](cell)
            except ValueError as exc:
                problem = problem or KumulosInputError(
                    f"{where} column {name!r}",
                    f"the value is not a valid {kind}: {exc}",
                    "Fix the cell or change the column's type in attribute_types.",
                )
        if problem is None:
            yield SourceRecord(where, row[id_index], attributes)
        else:  # a row that cannot be read is kept as read: every cell as its text
            as_read = {name: row[index] for index, name, _ in columns if row[index] != ""}
            yield SourceRecord(where, row[id_index], as_read, problem, _csv_text(row))


def _csv_text(row: list[str]) -> str:
    """``row`` as one line of CSV text, quoted as needed, without the line ending."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()
