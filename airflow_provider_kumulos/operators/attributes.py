"""SetAttributesOperator and DeleteAttributesOperator: write or clear Kumulos user attributes.

Both work on one user or in bulk. They stay thin: check their arguments, pick a record source (one
user, a list, a JSONL/CSV/text file streamed from any object storage, or the rows of a SQL query)
and hand it to the bulk write (``_bulk.run``) together with the API call to make per record.
Everything heavy is imported inside ``execute``, so DAG files that import these operators parse fast.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_kumulos._bulk.options import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_MAX_REMOVAL_FRACTION,
    DELETE,
    SET,
    SOURCE_FORMATS,
    check_static,
    renderers,
    templated,
)
from airflow_provider_kumulos._checks import check_json
from airflow_provider_kumulos._progress import DEFAULT_INTERVAL
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_kumulos._bulk.reconcile import Baseline
    from airflow_provider_kumulos._bulk.records import Job, Remover, SourceRecord
    from airflow_provider_kumulos._bulk.report import BulkReport
    from airflow_provider_kumulos._bulk.sync import SyncState
    from airflow_provider_kumulos.hooks._config import ClientConfig
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

#: The XCom key of a task's return value; the summary goes there even when the task fails.
XCOM_RETURN_KEY = "return_value"

Records = tuple[Iterable["SourceRecord"], int | None]
#: Records, their count when known, and the attribute keys the source declares (a query's columns).
OpenedRecords = tuple[Iterable["SourceRecord"], int | None, tuple[str, ...]]


class _AttributesOperator(BaseOperator):
    """Arguments and execution shared by the attribute operators; subclasses supply records and the call."""

    #: A ``sql`` ending in .sql is a template file, as for common-sql's SQLExecuteQueryOperator.
    template_ext = (".sql",)

    #: Which operator of the list of options (``_bulk.options``) this is.
    kind: ClassVar[str]
    #: Names the operation in progress lines, summaries and errors.
    what: ClassVar[str]
    #: Whether records carry attributes (set) or only identifiers (delete).
    with_attributes: ClassVar[bool]
    #: Whether users absent from the source are cleared (set by operators that keep a sync state).
    remove_absent = False
    max_removal_fraction = DEFAULT_MAX_REMOVAL_FRACTION
    #: What lineage is built from (source_path, the app written to, users written), kept as plain
    #: values until the OpenLineage listener asks.
    _ran: tuple[Any, ClientConfig | None, int] | None = None

    # The options both operators take, as kept (templated ones as given, the others as checked).
    kumulos_conn_id: str
    user_id: Any
    source_path: Any
    source_format: str | None
    sql: Any
    sql_conn_id: Any
    sql_parameters: Any
    sql_hook_params: Any
    identifier_column: str
    max_concurrency: int
    max_requests_per_second: float | None
    max_failures: int
    failures_path: Any
    is_dry_run: bool
    hook_params: dict[str, Any]
    progress_interval: float
    reconcile: bool
    reconcile_from: Any

    def _take_options(self, arguments: Mapping[str, Any]) -> None:
        """Check the operator's options as given (``_bulk.options``) and keep each as an attribute."""
        for name, value in check_static(self.kind, arguments).items():
            setattr(self, name, value)

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

    def _remover(self, hook: KumulosCRMHook) -> Remover | None:
        """Makes the call that clears the managed keys of a user absent from the source, if the
        operator removes them."""
        return None

    def _missing_ok(self) -> bool:
        """Whether a user Kumulos does not list counts as done without a request (deletes)."""
        return False

    def _merge(self) -> bool:
        """Whether a record only needs its own keys in place (merge), not the whole attribute set."""
        return False

    def _managed_keys(self) -> tuple[str, ...]:
        """Attribute keys this run manages beyond those its records carry."""
        return ()

    # --- execution ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open_records(self) -> Iterator[OpenedRecords]:
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
            hook_params = (
                None
                if self.sql_hook_params is None
                else check_json(
                    "sql_hook_params",
                    self.sql_hook_params,
                    Mapping,
                    'a mapping of the database hook\'s arguments such as {"options": "-c search_path=crm"}',
                )
            )
            with open_sql_source(
                self.sql,
                conn_id=str(self.sql_conn_id),
                parameters=parameters,
                hook_params=hook_params,
                identifier_column=self.identifier_column,
                with_attributes=self.with_attributes,
            ) as rows:
                yield rows, None, tuple(rows.attribute_columns)
            return
        if self.source_path is None:
            yield (*self._given_records(), ())
            return
        from airflow_provider_kumulos._bulk.sources import open_source

        with open_source(
            self.source_path,
            source_format=self.source_format,
            allowed_formats=SOURCE_FORMATS[self.kind],
            identifier_column=self.identifier_column,
            attribute_types=self._attribute_types(),
            with_attributes=self.with_attributes,
        ) as records:
            yield records, None, ()

    def _baseline(self, hook: KumulosCRMHook) -> contextlib.AbstractContextManager[Baseline | None]:
        """What Kumulos holds, read before any write, when reconciling."""
        if not self.reconcile and self.reconcile_from is None:
            return contextlib.nullcontext()
        from airflow_provider_kumulos._bulk.reconcile import open_baseline
        from airflow_provider_kumulos.hooks._paging import MAX_AHEAD

        return open_baseline(
            hook,
            self.reconcile_from,
            merge=self._merge(),
            ahead=min(self.max_concurrency, MAX_AHEAD),
            logger=self.log,
            progress_interval=self.progress_interval,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Check every argument, run the records through the bulk runner, return (and push) the summary.

        Above ``max_failures`` failed records (or on an auth/configuration error) the summary is
        pushed to XCom first, the failures file is already published, then the task fails.
        """
        from airflow_provider_kumulos._bulk.failures import check_failures_path
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        failures_path = check_failures_path(self.failures_path)
        with self._open_records() as (records, total, source_keys):
            hook = KumulosCRMHook(
                self.kumulos_conn_id,
                pool_size=self.max_concurrency,
                max_requests_per_second=self.max_requests_per_second,
                **self.hook_params,
            )
            try:
                with self._sync_state(hook) as state, self._baseline(hook) as baseline:
                    report = self._run(records, total, hook, state, baseline, source_keys, failures_path)
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
        baseline: Baseline | None,
        source_keys: tuple[str, ...],
        failures_path: ObjectStoragePath | None,
    ) -> BulkReport:
        """Hand the records, the calls to make, the sync state and what Kumulos holds (if any) to the runner."""
        from airflow_provider_kumulos._bulk.reconcile import Reconciler
        from airflow_provider_kumulos._bulk.run import run_bulk

        live = not self.is_dry_run
        reconciler = None if baseline is None else Reconciler(baseline, state, missing_ok=self._missing_ok())
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
            reconciler=reconciler,
            remove_absent=self.remove_absent,
            remove=self._remover(hook) if live else None,
            managed_keys=(*source_keys, *self._managed_keys()),
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

    Give exactly one of: ``user_id`` with ``attributes``, ``records``, ``source_path``, or ``sql``.
    Each PUT replaces the user's attribute set (creating the user if missing). Returns a summary
    (counts, first errors, never attribute values); fails when more than ``max_failures`` records
    failed, after writing them to ``failures_path``. With ``reconcile=True`` (or ``reconcile_from``)
    the run first reads what Kumulos holds and sends only the records that differ from it, which
    also corrects what the mobile app overwrote. See docs/attributes.md.

    :param kumulos_conn_id: Airflow connection of type ``kumulos``. Templated.
    :param user_id: one user's identifier; goes with ``attributes``. Templated.
    :param attributes: the JSON object to set on ``user_id`` (a dict, or a template rendering one). Templated.
    :param records: a list of ``{"identifier": ..., "attributes": {...}}``: a list, an XComArg, or a
        template rendering a JSON array. Templated.
    :param source_path: JSONL or CSV file (optionally ``.gz``), local path or object-storage URL,
        streamed. Templated.
    :param source_format: ``"jsonl"`` or ``"csv"``; by default told from the file name.
    :param sql: a query whose rows are the records (identifier column + one column per attribute);
        a value ending in ``.sql`` is read as a template file. Templated.
    :param sql_conn_id: with ``sql``: any connection whose hook is a common-sql ``DbApiHook``. Templated.
    :param sql_parameters: with ``sql``: values bound by the driver, a list or a mapping. Templated.
    :param sql_hook_params: with ``sql``: keyword arguments for the database hook's constructor
        (e.g. ``{"options": "-c search_path=crm"}`` for Postgres). Templated.
    :param identifier_column: the identifier's key in records and JSONL lines, its column in CSV and SQL.
    :param attribute_types: CSV only: column name -> ``"str"``, ``"int"``, ``"float"``, ``"bool"`` or ``"json"``.
    :param merge: read each user's attributes first and overlay the new keys.
    :param max_concurrency: workers sending requests at once, 1 to 64.
    :param max_requests_per_second: optional cap on the request rate of the whole task.
    :param max_failures: the task fails when more records than this failed.
    :param failures_path: JSONL file (``.jsonl`` or ``.jsonl.gz``) receiving the failed records, which
        can be passed back as ``source_path``. Templated.
    :param dry_run: validate every record and report what would be sent; send nothing.
    :param reconcile: read what Kumulos holds first (the users listing) and send only the records that
        differ from it; with ``sync_state_path`` too, count the ``drifted`` ones.
    :param reconcile_from: compare with an export ``ExportUsersOperator`` wrote (its file or its
        ``_manifest.json``) instead of the listing; implies ``reconcile``. Templated.
    :param sync_state_path: file keeping what the last sync sent: only changed records are sent. Templated.
    :param checkpoint_interval: with ``sync_state_path``: seconds between saves of the state while the
        run goes on (default 60), so a retry after a crash resends only what was sent since the last one.
    :param full_refresh: with ``sync_state_path``: send every record and rewrite the state.
    :param remove_absent: with ``sync_state_path`` or a reconcile: users that left the source lose the
        keys this sync manages.
    :param managed_keys: with ``remove_absent``: more attribute keys this sync manages besides its
        source's.
    :param max_removal_fraction: ``remove_absent`` refuses when more than this share (0 to 1) of the
        synced users would be cleared.
    :param hook_params: arguments for the Kumulos hook (``timeout``, ``connect_timeout``,
        ``max_retries``, ``backoff_base``, ``backoff_max``, ``max_retry_after``, ``verify``), each
        overriding the connection extra of the same name; checked when the task is built.
    :param progress_interval: seconds between progress lines in the task log (default 10).
    """

    kind = SET
    # Its own options, as kept.
    attributes: Any
    records: Any
    attribute_types: dict[str, str] | None
    merge: bool
    sync_state_path: Any
    checkpoint_interval: float
    full_refresh: bool
    managed_keys: tuple[str, ...] | None
    template_fields = templated(SET)
    template_fields_renderers: ClassVar[dict[str, str]] = renderers(SET)
    what = "set attributes"
    with_attributes = True

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
        sql_hook_params: Mapping[str, Any] | str | None = None,
        identifier_column: str = "identifier",
        attribute_types: Mapping[str, str] | None = None,
        merge: bool = False,
        max_concurrency: int = 8,
        max_requests_per_second: float | None = None,
        max_failures: int = 0,
        failures_path: Any = None,
        dry_run: bool = False,
        reconcile: bool = False,
        reconcile_from: Any = None,
        sync_state_path: Any = None,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        full_refresh: bool = False,
        remove_absent: bool = False,
        managed_keys: Iterable[str] | None = None,
        max_removal_fraction: float = DEFAULT_MAX_REMOVAL_FRACTION,
        hook_params: Mapping[str, Any] | None = None,
        progress_interval: float = DEFAULT_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._take_options(locals())  # the parameters, read by name from the list of options

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
            checkpoint_interval=self.checkpoint_interval,
            logger=self.log,
        )

    def _merge(self) -> bool:
        return self.merge

    def _managed_keys(self) -> tuple[str, ...]:
        return self.managed_keys or ()

    def _remover(self, hook: KumulosCRMHook) -> Remover | None:
        """Clear the keys this sync manages: read, drop them, write the rest (merge); or delete all."""
        if not self.remove_absent:
            return None
        return functools.partial(_remove_managed, hook, self.merge)

    def _sender(self, hook: KumulosCRMHook) -> Callable[[Job], str]:
        """PUT the record; with merge, overlaid on a fresh read (and skipped, reconciling, when it
        shows Kumulos already holds the record)."""
        from airflow_provider_kumulos._bulk.reconcile import already_holds
        from airflow_provider_kumulos._bulk.records import SUCCEEDED, UNCHANGED
        from airflow_provider_kumulos.exceptions import KumulosUserNotFoundError

        merge, reconcile = self.merge, self.reconcile or self.reconcile_from is not None

        def send(job: Job) -> str:
            attributes = dict(job.attributes or {})
            if merge:
                try:
                    current = hook.get_attributes(job.identifier)
                except KumulosUserNotFoundError:
                    current = {}  # PUT creates the user
                if reconcile and already_holds(current, attributes):
                    return UNCHANGED
                attributes = {**current, **attributes}
            hook.set_attributes(job.identifier, attributes)
            return SUCCEEDED

        return send


def _remove_managed(hook: KumulosCRMHook, merge: bool, managed: frozenset[str]) -> Callable[[Job], str]:
    """The call that clears the ``managed`` keys of one user absent from the source."""
    from airflow_provider_kumulos._bulk.records import MISSING, SUCCEEDED
    from airflow_provider_kumulos.exceptions import KumulosUserNotFoundError

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


class DeleteAttributesOperator(_AttributesOperator):
    """Delete every attribute of one user or many (``user_ids``, a JSONL/CSV/text file, a query), concurrently.

    Give exactly one of ``user_id``, ``user_ids``, ``source_path`` or ``sql``. Kumulos answers 400 for
    a user that does not exist; with ``missing_ok`` that counts as done, so re-running a delete is
    harmless. With ``reconcile=True`` (or ``reconcile_from``) users who hold no attributes or whom
    Kumulos does not list get no request. Returns a summary as :class:`SetAttributesOperator` does.

    :param kumulos_conn_id: Airflow connection of type ``kumulos``. Templated.
    :param user_id: one user's identifier. Templated.
    :param user_ids: a list of identifiers: a list, an XComArg, or a template rendering a JSON array. Templated.
    :param source_path: ``.txt`` (one identifier per line), ``.jsonl`` or ``.csv`` file, optionally
        ``.gz``, local path or object-storage URL, streamed. Templated.
    :param source_format: ``"jsonl"``, ``"csv"`` or ``"txt"``; by default told from the file name.
    :param sql: a query whose identifier column names the users; a value ending in ``.sql`` is read
        as a template file. Templated.
    :param sql_conn_id: with ``sql``: any connection whose hook is a common-sql ``DbApiHook``. Templated.
    :param sql_parameters: with ``sql``: values bound by the driver, a list or a mapping. Templated.
    :param sql_hook_params: with ``sql``: keyword arguments for the database hook's constructor. Templated.
    :param missing_ok: a user that does not exist counts as done (``missing`` in the summary).
    :param max_concurrency: workers sending requests at once, 1 to 64.
    :param max_requests_per_second: optional cap on the request rate of the whole task.
    :param max_failures: the task fails when more records than this failed.
    :param failures_path: JSONL file receiving the failed identifiers. Templated.
    :param dry_run: validate every identifier and report what would be sent; send nothing.
    :param reconcile: read what Kumulos holds first: users who hold no attributes (``unchanged``) or
        whom it does not list (``missing``, with ``missing_ok``) get no request.
    :param reconcile_from: an export to read that from instead of the listing; implies ``reconcile``. Templated.
    :param identifier_column: the identifier's key (JSONL) or column (CSV, SQL).
    :param hook_params: arguments for the Kumulos hook, as for :class:`SetAttributesOperator`.
    :param progress_interval: seconds between progress lines in the task log (default 10).
    """

    kind = DELETE
    # Its own options, as kept.
    user_ids: Any
    missing_ok: bool
    template_fields = templated(DELETE)
    template_fields_renderers: ClassVar[dict[str, str]] = renderers(DELETE)
    what = "delete attributes"
    with_attributes = False

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
        sql_hook_params: Mapping[str, Any] | str | None = None,
        identifier_column: str = "identifier",
        missing_ok: bool = True,
        max_concurrency: int = 8,
        max_requests_per_second: float | None = None,
        max_failures: int = 0,
        failures_path: Any = None,
        dry_run: bool = False,
        reconcile: bool = False,
        reconcile_from: Any = None,
        hook_params: Mapping[str, Any] | None = None,
        progress_interval: float = DEFAULT_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._take_options(locals())  # the parameters, read by name from the list of options

    def _missing_ok(self) -> bool:
        return self.missing_ok

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
