"""The export's options, declared once: each field of :class:`ExportOptions` is one option.

Every field carries its default, its check, whether it is templated and whether it is part of the
resume fingerprint; :data:`EXPORT_OPTIONS` lists them in check order. The operator's ``__init__``
and ``template_fields``, :func:`check_static` (run when the operator is built, so a broken DAG
fails at parse time), :func:`build_options` (every check, once templates are rendered), the resume
fingerprint and the manifest's description of options all follow from that list. Every check
raises :class:`~airflow_provider_kumulos.exceptions.KumulosInputError` naming the parameter, the
problem and the fix. Nothing heavy is imported here: the operator module imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._checks import check_bool, check_choice, check_whole_number
from airflow_provider_kumulos._policy import MAX_PER_PAGE, check_page_window, check_per_page
from airflow_provider_kumulos._users import TIMESTAMP_FIELDS, USER_FIELDS
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.hooks._paging import check_ahead

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

FORMATS = ("jsonl", "json", "csv", "parquet")
#: Formats written as text, which ``compression="gzip"`` may wrap (parquet compresses internally).
TEXT_FORMATS = ("jsonl", "json", "csv")
COMPRESSIONS = ("gzip",)
MISMATCH_POLICIES = ("warn", "fail")
MAX_PAGE_SIZE = MAX_PER_PAGE
#: Requests in flight by default: one page arriving while another is fetched and one is written.
DEFAULT_CONCURRENCY = 2

#: A check takes the value and the options checked before it (in list order); returns the checked value.
Check = Callable[[Any, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class ExportOption:
    """One export option: ``check`` normalises its value, ``fingerprint`` marks options that shape the output."""

    name: str
    default: Any
    check: Check
    templated: bool = False
    fingerprint: bool = False


# --- the checks, in the order of the list -------------------------------------------------------


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 with an offset (``Z`` accepted) as an aware datetime; ValueError otherwise."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("no UTC offset")
    return parsed


def check_page_size(page_size: object) -> int:
    """Users per request: 1..1000, the most Kumulos serves per page."""
    return check_per_page(page_size, "page_size")


def _check_page_size(value: object, earlier: Mapping[str, Any]) -> int:
    return check_page_size(value)


def _check_max_xcom_users(value: object, earlier: Mapping[str, Any]) -> int:
    """Upper bound on users returned through XCom (when there is no ``output_path``)."""
    fix = "Use a positive limit, or set output_path for large exports."
    return check_whole_number("max_xcom_users", value, 1, fix=fix, rendered=True)


def _check_include_installs(value: object, earlier: Mapping[str, Any]) -> bool:
    return check_bool("include_installs", value)


def _check_stamp_field(value: object, earlier: Mapping[str, Any]) -> str:
    return check_choice("updated_since_field", value, TIMESTAMP_FIELDS)


def _check_on_count_mismatch(value: object, earlier: Mapping[str, Any]) -> str:
    return check_choice("on_count_mismatch", value, MISMATCH_POLICIES)


def _check_start_page(value: object, earlier: Mapping[str, Any]) -> int:
    return check_page_window(value, None, rendered=True)[0]


def _check_output_path(value: object, earlier: Mapping[str, Any]) -> ObjectStoragePath | None:
    """None (return users through XCom) or a local path / object-storage URL."""
    from airflow_provider_kumulos._checks import check_path

    if value is None:
        return None
    if isinstance(value, str) and value.strip() in ("", "None"):
        raise KumulosInputError(
            "output_path",
            f"it rendered to {value!r}",
            "Pass a path or URL, or leave output_path unset to return the users through XCom.",
        )
    return check_path("output_path", value)


def _check_format(value: object, earlier: Mapping[str, Any]) -> str:
    if value not in FORMATS:
        raise KumulosInputError(
            "format", f"{value!r} is not a supported format", f"Use one of {', '.join(FORMATS)}."
        )
    return str(value)


def _check_compression(value: object, earlier: Mapping[str, Any]) -> str | None:
    """None or gzip; gzip wraps text formats only."""
    if value is None:
        return None
    if value not in COMPRESSIONS:
        raise KumulosInputError(
            "compression", f"{value!r} is not supported", 'Use None or "gzip" (text formats only).'
        )
    if earlier["format"] not in TEXT_FORMATS:
        raise KumulosInputError(
            "compression",
            f"{value!r} cannot wrap format {earlier['format']!r}",
            "Leave compression as None: parquet compresses its column chunks itself.",
        )
    return str(value)


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


def _check_fields(value: object, earlier: Mapping[str, Any]) -> tuple[str, ...] | None:
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
    if "installs" in fields and not earlier["include_installs"]:
        raise KumulosInputError(
            "fields", "it lists 'installs' while include_installs=False", "Drop one of the two settings."
        )
    return fields


def _check_updated_since(value: object, earlier: Mapping[str, Any]) -> datetime | None:
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


def _check_split_every(value: object, earlier: Mapping[str, Any]) -> int | None:
    """Users per part file; parts need an ``output_path`` to live under."""
    if value is None:
        return None
    split = check_whole_number(
        "split_every", value, 1, fix="Use None (one file) or the number of users per part.", rendered=True
    )
    if earlier["output_path"] is None:
        raise KumulosInputError(
            "split_every",
            "part files need an output_path",
            "Set output_path to the folder (prefix) for parts.",
        )
    return split


def _check_end_page(value: object, earlier: Mapping[str, Any]) -> int | None:
    """None (to the last page) or a page >= ``start_page``: the one window check the hook uses too."""
    return check_page_window(earlier["start_page"], None if value == "" else value, rendered=True)[1]


def _check_attribute_columns(value: object, earlier: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Attribute keys that get their own csv column (others go to ``attributes_json``)."""
    if value is None:
        return None
    if earlier["format"] != "csv":
        raise KumulosInputError(
            "attribute_columns",
            f"it only applies to format='csv', not {earlier['format']!r}",
            "Remove attribute_columns.",
        )
    return _names("attribute_columns", value)


def _check_max_concurrency(value: object, earlier: Mapping[str, Any]) -> int:
    """Requests an export keeps in flight: 1..8."""
    return check_ahead("max_concurrency", value, 1)


# --- the list ------------------------------------------------------------------------------------


def _spec(check: Check, templated: bool, fingerprint: bool) -> dict[str, Any]:
    """The metadata that makes a field of :class:`ExportOptions` an option: its check, whether it is
    templated, whether it is in the resume fingerprint (and the manifest's description)."""
    return {"check": check, "templated": templated, "fingerprint": fingerprint}


@dataclass(frozen=True)
class ExportOptions:
    """Every export setting after validation; ``output_path`` is None for an XCom export.

    Each field is one option, declared in check order (a check may read the options before it):
    ``field(default=..., metadata=_spec(check, templated, fingerprint))``.
    """

    output_path: ObjectStoragePath | None = field(
        default=None, metadata=_spec(_check_output_path, True, True)
    )
    format: str = field(default="jsonl", metadata=_spec(_check_format, False, True))
    compression: str | None = field(default=None, metadata=_spec(_check_compression, False, True))
    page_size: int = field(default=MAX_PAGE_SIZE, metadata=_spec(_check_page_size, False, True))
    max_xcom_users: int = field(default=10_000, metadata=_spec(_check_max_xcom_users, False, False))
    include_installs: bool = field(default=True, metadata=_spec(_check_include_installs, False, True))
    fields: tuple[str, ...] | None = field(default=None, metadata=_spec(_check_fields, True, True))
    updated_since: datetime | None = field(default=None, metadata=_spec(_check_updated_since, True, True))
    updated_since_field: str = field(default="updatedAt", metadata=_spec(_check_stamp_field, False, True))
    on_count_mismatch: str = field(default="warn", metadata=_spec(_check_on_count_mismatch, False, False))
    split_every: int | None = field(default=None, metadata=_spec(_check_split_every, False, True))
    start_page: int = field(default=1, metadata=_spec(_check_start_page, True, True))
    end_page: int | None = field(default=None, metadata=_spec(_check_end_page, True, True))
    attribute_columns: tuple[str, ...] | None = field(
        default=None, metadata=_spec(_check_attribute_columns, True, True)
    )
    max_concurrency: int = field(
        default=DEFAULT_CONCURRENCY, metadata=_spec(_check_max_concurrency, False, False)
    )
    #: Not an option: ``output_path`` as given, so that summaries show paths in the same form.
    output_given: str | None = field(default=None, compare=False)

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

    def _shaping(self) -> dict[str, Any]:
        """The options that shape the output, as JSON-safe values."""
        return {
            option.name: _json_safe(getattr(self, option.name))
            for option in EXPORT_OPTIONS
            if option.fingerprint
        }

    def fingerprint(self) -> str:
        """Digest of everything that shapes the output: a resume only continues an identical export."""
        return hashlib.sha256(json.dumps(self._shaping(), sort_keys=True).encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The options a manifest records: those that shape the output, ``fields`` as the kept keys."""
        described = self._shaping()
        del described["output_path"]  # the manifest lives there
        described["fields"] = list(self.kept_fields())
        return described


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


#: Every export option, in check order.
EXPORT_OPTIONS: tuple[ExportOption, ...] = tuple(
    ExportOption(
        name=spec.name,
        default=spec.default,
        check=spec.metadata["check"],
        templated=spec.metadata["templated"],
        fingerprint=spec.metadata["fingerprint"],
    )
    for spec in dataclasses.fields(ExportOptions)
    if "check" in spec.metadata
)
#: The options a DAG author may template (the operator adds ``kumulos_conn_id``).
TEMPLATED_OPTIONS = tuple(option.name for option in EXPORT_OPTIONS if option.templated)


def check_static(values: Mapping[str, Any]) -> None:
    """The checks of options that are not templated: run when the operator is built."""
    earlier: dict[str, Any] = {}
    for option in EXPORT_OPTIONS:
        value = values[option.name]
        earlier[option.name] = value if option.templated else option.check(value, earlier)


def check_parquet_available(fmt: str) -> None:
    """Parquet needs the optional ``parquet`` extra (pyarrow); say so before any request."""
    import importlib.util

    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise KumulosInputError(
            "format",
            "'parquet' needs pyarrow, which is not installed",
            "Install airflow-provider-kumulos[parquet] on the workers, or choose jsonl, json or csv.",
        )


def build_options(values: Mapping[str, Any] | None = None, /, **more: Any) -> ExportOptions:
    """Check every (rendered) option; unnamed options take their defaults."""
    given = {**(values or {}), **more}
    unknown = set(given) - {option.name for option in EXPORT_OPTIONS}
    if unknown:
        raise TypeError(f"unknown export options: {', '.join(sorted(unknown))}")
    checked: dict[str, Any] = {}
    for option in EXPORT_OPTIONS:
        checked[option.name] = option.check(given.get(option.name, option.default), checked)
    check_parquet_available(checked["format"])
    given_path = given.get("output_path")
    return ExportOptions(**checked, output_given=None if given_path is None else str(given_path))
