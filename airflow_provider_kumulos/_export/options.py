"""Export arguments, checked and normalised before any request is sent.

Every check raises :class:`~airflow_provider_kumulos.exceptions.KumulosInputError` naming the
parameter, the problem and the fix. The checks that do not depend on templates run when the
operator is built (so a broken DAG fails at parse time); all of them run again in ``execute``
once templates are rendered. Nothing heavy is imported here: the operator module imports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._checks import check_whole_number
from airflow_provider_kumulos._policy import MAX_PER_PAGE, check_per_page
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.hooks._paging import MAX_AHEAD

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

FORMATS = ("jsonl", "json", "csv", "parquet")
#: Formats written as text, which ``compression="gzip"`` may wrap (parquet compresses internally).
TEXT_FORMATS = ("jsonl", "json", "csv")
COMPRESSIONS = ("gzip",)
MISMATCH_POLICIES = ("warn", "fail")
TIMESTAMP_FIELDS = ("updatedAt", "lastActive", "createdAt", "firstActive")
#: Top-level keys of a Kumulos user object (the API documents exactly these).
USER_FIELDS = (
    "identifier",
    "attributes",
    "firstActive",
    "lastActive",
    "inAppEnabled",
    "createdAt",
    "updatedAt",
    "installs",
)
MAX_PAGE_SIZE = MAX_PER_PAGE
#: Requests in flight by default: one page arriving while another is fetched and one is written.
DEFAULT_CONCURRENCY = 2


@dataclass(frozen=True)
class ExportOptions:
    """Every export setting after validation; ``output_path`` is None for an XCom export."""

    output_path: ObjectStoragePath | None
    format: str = "jsonl"
    compression: str | None = None
    page_size: int = MAX_PAGE_SIZE
    max_xcom_users: int = 10_000
    fields: tuple[str, ...] | None = None
    include_installs: bool = True
    updated_since: datetime | None = None
    updated_since_field: str = "updatedAt"
    on_count_mismatch: str = "warn"
    split_every: int | None = None
    start_page: int = 1
    end_page: int | None = None
    attribute_columns: tuple[str, ...] | None = None
    max_concurrency: int = DEFAULT_CONCURRENCY

    @property
    def projecting(self) -> bool:
        """Whether users must be decoded to drop keys (else jsonl/json pass them through as sent)."""
        return self.fields is not None or not self.include_installs

    def kept_fields(self) -> tuple[str, ...]:
        """Top-level keys that reach the output, in API order."""
        wanted = USER_FIELDS if self.fields is None else self.fields
        return tuple(
            name
            for name in USER_FIELDS
            if (name in wanted or name == "identifier") and (self.include_installs or name != "installs")
        )

    def fingerprint(self) -> str:
        """Digest of everything that shapes the output: a resume only continues an identical export."""
        described = {
            "output_path": str(self.output_path),
            "format": self.format,
            "compression": self.compression,
            "page_size": self.page_size,
            "fields": self.fields,
            "include_installs": self.include_installs,
            "updated_since": self.updated_since.isoformat() if self.updated_since else None,
            "updated_since_field": self.updated_since_field,
            "split_every": self.split_every,
            "start_page": self.start_page,
            "end_page": self.end_page,
            "attribute_columns": self.attribute_columns,
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _whole_number(parameter: str, value: object, minimum: int, fix: str) -> int:
    """``value`` as an int >= ``minimum``; digit strings (rendered templates) are accepted."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return check_whole_number(parameter, value, minimum, fix=fix)


def check_page_size(page_size: object) -> int:
    """Users per request: 1..1000, the most Kumulos serves per page."""
    return check_per_page(page_size, "page_size")


def check_format(fmt: object, compression: object) -> tuple[str, str | None]:
    """Output format and compression: gzip wraps text formats only."""
    if fmt not in FORMATS:
        raise KumulosInputError(
            "format", f"{fmt!r} is not a supported format", f"Use one of {', '.join(FORMATS)}."
        )
    if compression is not None and compression not in COMPRESSIONS:
        raise KumulosInputError(
            "compression", f"{compression!r} is not supported", 'Use None or "gzip" (text formats only).'
        )
    if compression is not None and fmt not in TEXT_FORMATS:
        raise KumulosInputError(
            "compression",
            f"{compression!r} cannot wrap format {fmt!r}",
            "Leave compression as None: parquet compresses its column chunks itself.",
        )
    return str(fmt), None if compression is None else str(compression)


def check_parquet_available(fmt: str) -> None:
    """Parquet needs the optional ``parquet`` extra (pyarrow); say so before any request."""
    import importlib.util

    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise KumulosInputError(
            "format",
            "'parquet' needs pyarrow, which is not installed",
            "Install airflow-provider-kumulos[parquet] on the workers, or choose jsonl, json or csv.",
        )


def check_choice(parameter: str, value: object, choices: Sequence[str]) -> str:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise KumulosInputError(
            parameter, f"{value!r} is not a valid choice", f"Use one of {', '.join(map(repr, choices))}."
        )
    return str(value)


def check_max_xcom_users(value: object) -> int:
    """Upper bound on users returned through XCom (when there is no ``output_path``)."""
    return _whole_number(
        "max_xcom_users", value, 1, "Use a positive limit, or set output_path for large exports."
    )


def check_max_concurrency(value: object) -> int:
    """Requests an export keeps in flight: 1..8."""
    return check_whole_number(
        "max_concurrency",
        value,
        1,
        MAX_AHEAD,
        f"Use 1 (one page fetched ahead) up to {MAX_AHEAD}; more only provokes rate limiting.",
    )


def check_split_every(value: object, has_output: bool) -> int | None:
    """Users per part file; parts need an ``output_path`` to live under."""
    if value is None:
        return None
    split = _whole_number("split_every", value, 1, "Use None (one file) or the number of users per part.")
    if not has_output:
        raise KumulosInputError(
            "split_every",
            "part files need an output_path",
            "Set output_path to the folder (prefix) for parts.",
        )
    return split


def check_include_installs(value: object) -> bool:
    """``include_installs`` must be a real bool (a string "False" would be truthy)."""
    if not isinstance(value, bool):
        raise KumulosInputError("include_installs", f"{value!r} is not a bool", "Pass True or False.")
    return value


def _names(parameter: str, value: object) -> tuple[str, ...]:
    """A list of names, or a comma-separated string of them (what a rendered template yields)."""
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise KumulosInputError(
            parameter,
            f"expected a list of names, got {type(value).__name__}",
            'Pass a list such as ["a", "b"].',
        )
    if not items or not all(isinstance(item, str) and item for item in items):
        raise KumulosInputError(parameter, f"{value!r} is not a list of non-empty names", 'Pass ["a", "b"].')
    return tuple(dict.fromkeys(str(item) for item in items))


def check_fields(value: object, include_installs: bool) -> tuple[str, ...] | None:
    """Top-level user keys to keep (``identifier`` is always kept)."""
    if value is None:
        return None
    fields = _names("fields", value)
    unknown = [name for name in fields if name not in USER_FIELDS]
    if unknown:
        raise KumulosInputError(
            "fields",
            f"{unknown[0]!r} is not a key of a Kumulos user",
            f"Choose among {', '.join(USER_FIELDS)}.",
        )
    if "installs" in fields and not include_installs:
        raise KumulosInputError(
            "fields", "it lists 'installs' while include_installs=False", "Drop one of the two settings."
        )
    return fields


def check_attribute_columns(value: object, fmt: str) -> tuple[str, ...] | None:
    """Attribute keys that get their own csv column (others go to ``attributes_json``)."""
    if value is None:
        return None
    if fmt != "csv":
        raise KumulosInputError(
            "attribute_columns", f"it only applies to format='csv', not {fmt!r}", "Remove attribute_columns."
        )
    return _names("attribute_columns", value)


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 with an offset (``Z`` accepted) as an aware datetime; ValueError otherwise."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("no UTC offset")
    return parsed


def check_updated_since(value: object) -> datetime | None:
    """A timezone-aware datetime or ISO-8601 string (``{{ data_interval_start }}`` renders to one)."""
    if value is None:
        return None
    fix = 'Pass a timezone-aware datetime or an ISO-8601 string with an offset, e.g. "2024-05-01T00:00:00+00:00".'
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise KumulosInputError("updated_since", f"{value!r} has no timezone", fix)
        return value
    if not isinstance(value, str):
        raise KumulosInputError(
            "updated_since", f"expected a datetime or string, got {type(value).__name__}", fix
        )
    try:
        return parse_timestamp(value)
    except ValueError:
        raise KumulosInputError(
            "updated_since", f"{value!r} is not an ISO-8601 time with an offset", fix
        ) from None


def check_page_window(start_page: object, end_page: object) -> tuple[int, int | None]:
    """``start_page`` >= 1 and ``end_page`` (inclusive) None or >= ``start_page``."""
    start = _whole_number("start_page", start_page, 1, "Pages start at 1.")
    if end_page is None or end_page == "":
        return start, None
    end = _whole_number("end_page", end_page, 1, "Use None (to the last page) or a page number >= 1.")
    if end < start:
        raise KumulosInputError(
            "end_page", f"{end} is before start_page {start}", "Use end_page >= start_page."
        )
    return start, end


def check_output_path(value: object) -> ObjectStoragePath | None:
    """None (return users through XCom) or a local path / object-storage URL."""
    from airflow_provider_kumulos._storage import resolve_path

    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("", "None"):
        raise KumulosInputError(
            "output_path",
            f"it rendered to {value!r}",
            "Pass a path or URL, or leave output_path unset to return the users through XCom.",
        )
    return resolve_path(value, parameter="output_path")  # type: ignore[arg-type]


def check_static(
    *,
    page_size: object,
    format: object,
    compression: object,
    max_xcom_users: object,
    include_installs: object,
    updated_since_field: object,
    on_count_mismatch: object,
    max_concurrency: object,
) -> None:
    """The checks that need no rendered template; run when the operator is built."""
    check_page_size(page_size)
    check_max_concurrency(max_concurrency)
    check_format(format, compression)
    check_max_xcom_users(max_xcom_users)
    check_include_installs(include_installs)
    check_choice("updated_since_field", updated_since_field, TIMESTAMP_FIELDS)
    check_choice("on_count_mismatch", on_count_mismatch, MISMATCH_POLICIES)


def build_options(
    *,
    output_path: object,
    format: object,
    compression: object,
    page_size: object,
    max_xcom_users: object,
    fields: object,
    include_installs: object,
    updated_since: object,
    updated_since_field: object,
    on_count_mismatch: object,
    split_every: object,
    start_page: object,
    end_page: object,
    attribute_columns: object,
    max_concurrency: object = DEFAULT_CONCURRENCY,
) -> ExportOptions:
    """Validate every (rendered) argument and return the normalised options."""
    fmt, codec = check_format(format, compression)
    check_parquet_available(fmt)
    installs = check_include_installs(include_installs)
    start, end = check_page_window(start_page, end_page)
    path = check_output_path(output_path)
    return ExportOptions(
        output_path=path,
        format=fmt,
        compression=codec,
        page_size=check_page_size(page_size),
        max_xcom_users=check_max_xcom_users(max_xcom_users),
        fields=check_fields(fields, installs),
        include_installs=installs,
        updated_since=check_updated_since(updated_since),
        updated_since_field=check_choice("updated_since_field", updated_since_field, TIMESTAMP_FIELDS),
        on_count_mismatch=check_choice("on_count_mismatch", on_count_mismatch, MISMATCH_POLICIES),
        split_every=check_split_every(split_every, path is not None),
        start_page=start,
        end_page=end,
        attribute_columns=check_attribute_columns(attribute_columns, fmt),
        max_concurrency=check_max_concurrency(max_concurrency),
    )


def describe_options(options: ExportOptions) -> dict[str, Any]:
    """The options as JSON-safe values, for manifests."""
    return {
        "format": options.format,
        "compression": options.compression,
        "page_size": options.page_size,
        "fields": list(options.kept_fields()),
        "updated_since": options.updated_since.isoformat() if options.updated_since else None,
        "updated_since_field": options.updated_since_field,
        "split_every": options.split_every,
        "start_page": options.start_page,
        "end_page": options.end_page,
    }
