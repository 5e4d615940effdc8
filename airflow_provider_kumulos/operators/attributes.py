"""SetAttributesOperator and DeleteAttributesOperator: write or clear Kumulos user attributes.

Both work on one user or in bulk. They stay thin: check their arguments, pick a record source (one
user, a list, a JSONL/CSV/text file streamed from any object storage, or the rows of a SQL query)
and hand it to the bulk write (``_bulk.run``) together with the API call to make per record.
Everything heavy is imported inside ``execute``, so DAG files that import these operators parse fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_kumulos._checks import (
    check_bool,
    check_choice,
    check_exactly_one,
    check_json,
    check_number,
    check_whole_number,
)
from airflow_provider_kumulos._progress import DEFAULT_INTERVAL, check_interval
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_kumulos._bulk.records import Job, SourceRecord
    from airflow_provider_kumulos._bulk.report import BulkReport
    from airflow_provider_kumulos._bulk.sync import SyncState
    from airflow_provider_kumulos.hooks._config import ClientConfig
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

#: Upper bound on ``max_concurrency``: more parallel writes than this only provoke rate limiting.
MAX_CONCURRENCY = 64
#: The XCom key of a task's return value; the summary goes there even when the task fails.
XCOM_RETURN_KEY = "return_value"

#: Share of the users a sync state lists that one run may clear before ``remove_absent`` refuses.
DEFAULT_MAX_REMOVAL_FRACTION = 0.5

Records = tuple[Iterable["SourceRecord"], int | None]


#: Templated arguments both attribute operators share: the file and SQL sources, the failures file.
_SOURCE_TEMPLATE_FIELDS = ("source_path", "sql", "sql_conn_id", "sql_parameters", "failures_path")
_SOURCE_RENDERERS = {"sql": "sql", "sql_parameters": "json"}


class _AttributesOperator(BaseOperator):
    """Arguments and execution shared by the attribute operators; subclasses supply records and the call."""

    #: A ``sql`` ending in .sql is a template file, as for common-sql's SQLExecuteQueryOperator.
    template_ext = (".sql",)

    #: Names the operation in progress lines, summaries and errors.
    what: ClassVar[str]
    #: Whether records carry attributes (set) or only identifiers (delete).
    with_attributes: ClassVar[bool]
    #: File formats ``source_path`` may have.
    formats: ClassVar[tuple[str, ...]]
    #: Whether users absent from the source are cleared (set by operators that keep a sync state).
    remove_absent = False
    max_removal_fraction = DEFAULT_MAX_REMOVAL_FRACTION

    def __init__(
        self,
        *,
        kumulos_conn_id: str,
        source_path: Any,
        source_format: str | None,
        sql: str | None,
        sql_conn_id: str | None,
        sql_parameters: Mapping[str, Any] | list[Any] | str | None,
        identifier_column: str,
        max_concurrency: int,
        max_requests_per_second: float | None,
        max_failures: int,
        failures_path: Any,
        dry_run: bool,
        progress_interval: float = DEFAULT_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.progress_interval = check_interval(progress_interval)
        #: What lineage is built from (source_path, the app written to, users written), kept as plain
        #: values until the OpenLineage listener asks.
        self._ran: tuple[Any, ClientConfig | None, int] | None = None
        self.kumulos_conn_id = kumulos_conn_id
        self.source_path = source_path
        self.source_format = (
            None
            if source_format is None
            else check_choice(
                "source_format", source_format, self.formats, f"Use one of {', '.join(self.formats)}."
            )
        )
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_parameters = sql_parameters
        self.identifier_column = identifier_column
        self.max_concurrency = check_whole_number("max_concurrency", max_concurrency, 1, MAX_CONCURRENCY)
        self.max_requests_per_second = (
            None
            if max_requests_per_second is None
            else check_number(
                "max_requests_per_second",
                max_requests_per_second,
                0,
                low_open=True,
                fix="Pass a positive rate such as 20, or None for no cap.",
            )
        )
        self.max_failures = check_whole_number("max_failures", max_failures, 0)
        self.failures_path = failures_path
        self.is_dry_run = check_bool("dry_run", dry_run)  # BaseOperator.dry_run() is a method
        if not isinstance(identifier_column, str) or not identifier_column:
            raise KumulosInputError(
                "identifier_column", f"{identifier_column!r} is not a column name", 'Pass e.g. "identifier".'
            )
        if sql is None:
            for name, value in (("sql_conn_id", sql_conn_id), ("sql_parameters", sql_parameters)):
                if value is not None:
                    raise KumulosInputError(name, "it only applies to a sql source", "Remove it or pass sql.")
        elif sql_conn_id is None:
            raise KumulosInputError(
                "sql_conn_id", "sql was given without sql_conn_id", "Pass the id of a database connection."
            )

    # --- what subclasses provide ----------------------------------------------------------------

    def _given_records(self) -> Records:
        """Records passed as arguments (not ``source_path``), with their count when known."""
        raise NotImplementedError

    def _sender(self, hook: KumulosCRMHook) -> Callable[[Job], str]:
        """The API call for one record: returns ``SUCCEEDED`` or ``MISSING`` (``_bulk.records``), or raises."""
        raise NotImplementedError

    def _attribute_types(self) -> dict[str, str] | None:
        return None

    def _sync_state(self, hook: KumulosCRMHook) -> contextlib.AbstractContextManager[SyncState | None]:
        """The sync state this run reads and updates, if the operator keeps one."""
        return contextlib.nullcontext()

    def _remover(self, hook: KumulosCRMHook, state: SyncState) -> Callable[[Job], str] | None:
        """The call that clears a user absent from the source, if the operator removes them."""
        return None

    # --- execution ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open_records(self) -> Iterator[Records]:
        if self.sql is not None:
            from airflow_provider_kumulos._bulk.sql_source import open_sql_source

            parameters = (
                None
                if self.sql_parameters is None
                else check_json(
                    "sql_parameters",
                    self.sql_parameters,
                    (Mapping, list, tuple),
                    'a mapping such as {"segment": "vip"} or a list of values',
                )
            )
            with open_sql_source(
                self.sql,
                conn_id=str(self.sql_conn_id),
                parameters=parameters,
                identifier_column=self.identifier_column,
                with_attributes=self.with_attributes,
            ) as records:
                yield records, None
            return
        if self.source_path is None:
            yield self._given_records()
            return
        from airflow_provider_kumulos._bulk.sources import open_source

        with open_source(
            self.source_path,
            source_format=self.source_format,
            allowed_formats=self.formats,
            identifier_column=self.identifier_column,
            attribute_types=self._attribute_types(),
            with_attributes=self.with_attributes,
        ) as records:
            yield records, None

    def execute(self, context: Context) -> dict[str, Any]:
        """Check every argument, run the records through the bulk runner, return (and push) the summary.

        Above ``max_failures`` failed records (or on an auth/configuration error) the summary is
        pushed to XCom first, the failures file is already published, then the task fails.
        """
        from airflow_provider_kumulos._bulk.failures import check_failures_path
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        failures_path = check_failures_path(self.failures_path)
        with self._open_records() as (records, total):
            hook = KumulosCRMHook(
                self.kumulos_conn_id,
                pool_size=self.max_concurrency,
                max_requests_per_second=self.max_requests_per_second,
            )
            try:
                with self._sync_state(hook) as state:
                    report = self._run(records, total, hook, state, failures_path)
            finally:
                hook.close()
        counts = report.result.counts
        applied = counts.succeeded + counts.missing
        # Only a run that applied something has resolved (and so can name) its Kumulos app.
        self._ran = (self.source_path, hook.config if applied else None, applied)
        error = report.error(self.max_failures)
        if error is not None:
            context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=report.summary)
            raise error
        return report.summary

    def _run(
        self,
        records: Iterable[SourceRecord],
        total: int | None,
        hook: KumulosCRMHook,
        state: SyncState | None,
        failures_path: ObjectStoragePath | None,
    ) -> BulkReport:
        """Hand the records, the calls to make and the sync state (if any) to the bulk runner."""
        from airflow_provider_kumulos._bulk.run import run_bulk

        live = not self.is_dry_run
        return run_bulk(
            records,
            self._sender(hook) if live else None,
            what=self.what,
            with_attributes=self.with_attributes,
            with_missing=not self.with_attributes,
            max_concurrency=self.max_concurrency,
            failures_path=failures_path,
            logger=self.log,
            total=total,
            request_stats=hook.stats if live else None,
            progress_interval=self.progress_interval,
            state=state,
            remove_absent=self.remove_absent,
            remove=self._remover(hook, state) if live and state is not None else None,
            max_removal_fraction=self.max_removal_fraction,
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: ``source_path`` (if any) in, the Kumulos users out (see docs/observability.md)."""
        if self._ran is None:
            return None
        from airflow_provider_kumulos._lineage import bulk_lineage, operator_lineage

        return operator_lineage(bulk_lineage(*self._ran))


class SetAttributesOperator(_AttributesOperator):
    """Set Kumulos user attributes for one user or many (records, a JSONL/CSV file, a query), concurrently.

    Give exactly one of: ``user_id`` with ``attributes`` (one user); ``records``, a list of
    ``{"identifier": ..., "attributes": {...}}`` (e.g. an upstream task's XCom, or a template rendering
    JSON); ``source_path``, a JSONL or CSV file (optionally ``.gz``) on any object storage, streamed;
    or ``sql`` with ``sql_conn_id`` (and optionally ``sql_parameters``), a query on any database
    connection whose rows (identifier column + one column per attribute) are streamed.
    Each PUT replaces the user's attribute set (creating the user if missing); ``merge=True`` first
    reads the current attributes and overlays the new keys. Returns a summary (counts, first
    errors, never attribute values); fails when more than ``max_failures`` records failed, after
    writing them to ``failures_path`` (JSONL you can pass back as ``source_path``). A progress line
    goes to the task log every ``progress_interval`` seconds (default 10). With ``sync_state_path``
    only records whose attributes changed since the last successful sync are sent, and with
    ``remove_absent`` users who left the source lose the keys this sync manages. See
    docs/attributes.md for every parameter.
    """

    template_fields = (
        "kumulos_conn_id",
        "user_id",
        "attributes",
        "records",
        *_SOURCE_TEMPLATE_FIELDS,
        "sync_state_path",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "attributes": "json",
        "records": "json",
        **_SOURCE_RENDERERS,
    }
    what = "set attributes"
    with_attributes = True
    formats = ("jsonl", "csv")

    def __init__(
        self,
        *,
        kumulos_conn_id: str = "kumulos_default",
        user_id: str | None = None,
        attributes: Mapping[str, Any] | str | None = None,
        records: Iterable[Mapping[str, Any]] | str | None = None,
        source_path: Any = None,
        source_format: str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_parameters: Mapping[str, Any] | list[Any] | str | None = None,
        identifier_column: str = "identifier",
        attribute_types: Mapping[str, str] | None = None,
        merge: bool = False,
        max_concurrency: int = 8,
        max_requests_per_second: float | None = None,
        max_failures: int = 0,
        failures_path: Any = None,
        dry_run: bool = False,
        sync_state_path: Any = None,
        full_refresh: bool = False,
        remove_absent: bool = False,
        max_removal_fraction: float = DEFAULT_MAX_REMOVAL_FRACTION,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            kumulos_conn_id=kumulos_conn_id,
            source_path=source_path,
            source_format=source_format,
            sql=sql,
            sql_conn_id=sql_conn_id,
            sql_parameters=sql_parameters,
            identifier_column=identifier_column,
            max_concurrency=max_concurrency,
            max_requests_per_second=max_requests_per_second,
            max_failures=max_failures,
            failures_path=failures_path,
            dry_run=dry_run,
            **kwargs,
        )
        self.sync_state_path = sync_state_path
        self.full_refresh = check_bool("full_refresh", full_refresh)
        self.remove_absent = check_bool("remove_absent", remove_absent)
        self.max_removal_fraction = check_number("max_removal_fraction", max_removal_fraction, 0.0, 1.0)
        if sync_state_path is None and (full_refresh or remove_absent):
            given = "full_refresh" if full_refresh else "remove_absent"
            raise KumulosInputError(
                given, "it needs a sync state", f"Pass sync_state_path, or remove {given}."
            )
        check_exactly_one(
            {
                "user_id": user_id is not None or attributes is not None,
                "records": records is not None,
                "source_path": source_path is not None,
                "sql": sql is not None,
            },
            "Pass exactly one of: user_id with attributes (one user), records (a list), source_path (a file), "
            "sql (a query).",
        )
        if (user_id is None) != (attributes is None):
            missing, given = ("attributes", "user_id") if attributes is None else ("user_id", "attributes")
            raise KumulosInputError(
                missing, f"{given} was given without {missing}", "Pass user_id and attributes together."
            )
        if attribute_types is not None:
            from airflow_provider_kumulos._bulk.sources import check_attribute_types

            if source_path is None:
                raise KumulosInputError(
                    "attribute_types",
                    "it only applies to a CSV source_path",
                    "Remove it or pass source_path.",
                )
            attribute_types = check_attribute_types(attribute_types)
        self.user_id = user_id
        self.attributes = attributes
        self.records = records
        self.attribute_types = attribute_types
        self.merge = check_bool("merge", merge)

    def _attribute_types(self) -> dict[str, str] | None:
        return None if self.attribute_types is None else dict(self.attribute_types)

    def _given_records(self) -> Records:
        from airflow_provider_kumulos import _policy
        from airflow_provider_kumulos._bulk.records import SourceRecord
        from airflow_provider_kumulos._bulk.sources import from_records

        if self.user_id is not None:
            user_id = _policy.check_user_id(self.user_id, "user_id")
            attributes = check_json(
                "attributes", self.attributes, Mapping, 'a JSON object such as {"tier": "gold"}'
            )
            _policy.check_attributes(attributes, "attributes")
            return [SourceRecord("user_id", user_id, attributes)], 1
        records = check_json(
            "records", self.records, Iterable, 'a list of {"identifier": ..., "attributes": {...}}'
        )
        if isinstance(records, Mapping):
            raise KumulosInputError(
                "records", "expected a list of records, got one object", "Wrap it in a list, or use user_id."
            )
        total = len(records) if isinstance(records, Sized) else None
        return (
            from_records(
                records, parameter="records", identifier_key=self.identifier_column, with_attributes=True
            ),
            total,
        )

    def _sync_state(self, hook: KumulosCRMHook) -> contextlib.AbstractContextManager[SyncState | None]:
        if self.sync_state_path is None:
            return contextlib.nullcontext()
        from airflow_provider_kumulos._bulk.sync import open_state
        from airflow_provider_kumulos._checks import check_path

        return open_state(
            check_path("sync_state_path", self.sync_state_path),
            hook.config.api_key,
            full_refresh=self.full_refresh,
            save=not self.is_dry_run,
        )

    def _remover(self, hook: KumulosCRMHook, state: SyncState) -> Callable[[Job], str] | None:
        """Clear the keys this sync manages: read, drop them, write the rest (merge); or delete all."""
        if not self.remove_absent:
            return None
        from airflow_provider_kumulos._bulk.records import MISSING, SUCCEEDED
        from airflow_provider_kumulos.exceptions import KumulosUserNotFoundError

        merge = self.merge
        managed = frozenset(state.keys)

        def remove(job: Job) -> str:
            try:
                if merge:
                    current = hook.get_attributes(job.identifier)
                    rest = {key: value for key, value in current.items() if key not in managed}
                    if len(rest) == len(current):
                        return SUCCEEDED  # nothing of ours left: no write
                    if rest:
                        hook.set_attributes(job.identifier, rest)
                        return SUCCEEDED
                hook.delete_attributes(job.identifier)
            except KumulosUserNotFoundError:
                return MISSING
            return SUCCEEDED

        return remove

    def _sender(self, hook: KumulosCRMHook) -> Callable[[Job], str]:
        from airflow_provider_kumulos._bulk.records import SUCCEEDED
        from airflow_provider_kumulos.exceptions import KumulosUserNotFoundError

        merge = self.merge

        def send(job: Job) -> str:
            attributes = dict(job.attributes or {})
            if merge:
                try:
                    current = hook.get_attributes(job.identifier)
                except KumulosUserNotFoundError:
                    current = {}  # PUT creates the user
                attributes = {**current, **attributes}
            hook.set_attributes(job.identifier, attributes)
            return SUCCEEDED

        return send


class DeleteAttributesOperator(_AttributesOperator):
    """Delete every attribute of one user or many (``user_ids``, a JSONL/CSV/text file, a query), concurrently.

    Kumulos answers 400 for a user that does not exist; with ``missing_ok=True`` (default) that counts
    as done (``missing`` in the summary), so re-running a delete is harmless. Same concurrency,
    failures file, ``max_failures``, dry run and ``progress_interval`` as :class:`SetAttributesOperator`.
    """

    template_fields = ("kumulos_conn_id", "user_id", "user_ids", *_SOURCE_TEMPLATE_FIELDS)
    template_fields_renderers: ClassVar[dict[str, str]] = {"user_ids": "json", **_SOURCE_RENDERERS}
    what = "delete attributes"
    with_attributes = False
    formats = ("jsonl", "csv", "txt")

    def __init__(
        self,
        *,
        kumulos_conn_id: str = "kumulos_default",
        user_id: str | None = None,
        user_ids: Iterable[str] | str | None = None,
        source_path: Any = None,
        source_format: str | None = None,
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_parameters: Mapping[str, Any] | list[Any] | str | None = None,
        missing_ok: bool = True,
        max_concurrency: int = 8,
        max_requests_per_second: float | None = None,
        max_failures: int = 0,
        failures_path: Any = None,
        dry_run: bool = False,
        identifier_column: str = "identifier",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            kumulos_conn_id=kumulos_conn_id,
            source_path=source_path,
            source_format=source_format,
            sql=sql,
            sql_conn_id=sql_conn_id,
            sql_parameters=sql_parameters,
            identifier_column=identifier_column,
            max_concurrency=max_concurrency,
            max_requests_per_second=max_requests_per_second,
            max_failures=max_failures,
            failures_path=failures_path,
            dry_run=dry_run,
            **kwargs,
        )
        check_exactly_one(
            {
                "user_id": user_id is not None,
                "user_ids": user_ids is not None,
                "source_path": source_path is not None,
                "sql": sql is not None,
            },
            "Pass exactly one of: user_id (one user), user_ids (a list), source_path (a file), sql (a query).",
        )
        self.user_id = user_id
        self.user_ids = user_ids
        self.missing_ok = check_bool("missing_ok", missing_ok)

    def _given_records(self) -> Records:
        from airflow_provider_kumulos import _policy
        from airflow_provider_kumulos._bulk.records import SourceRecord
        from airflow_provider_kumulos._bulk.sources import from_identifiers

        if self.user_id is not None:
            return [SourceRecord("user_id", _policy.check_user_id(self.user_id, "user_id"))], 1
        user_ids = check_json("user_ids", self.user_ids, Iterable, 'a list of identifiers such as ["user-1"]')
        if isinstance(user_ids, Mapping):
            raise KumulosInputError(
                "user_ids", "expected a list of identifiers, got an object", "Pass a list."
            )
        total = len(user_ids) if isinstance(user_ids, Sized) else None
        return from_identifiers(user_ids, parameter="user_ids"), total

    def _sender(self, hook: KumulosCRMHook) -> Callable[[Job], str]:
        from airflow_provider_kumulos._bulk.records import MISSING, SUCCEEDED
        from airflow_provider_kumulos.exceptions import KumulosUserNotFoundError

        missing_ok = self.missing_ok

        def send(job: Job) -> str:
            try:
                hook.delete_attributes(job.identifier)
            except KumulosUserNotFoundError:
                if not missing_ok:
                    raise
                return MISSING
            return SUCCEEDED

        return send
