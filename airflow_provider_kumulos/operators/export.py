"""ExportUsersOperator: stream every Kumulos user to a file (or XCom), atomically and resumably.

Also here: :func:`plan_export_partitions`, which splits an export into page windows for mapped
tasks, and :class:`WriteExportManifestOperator` / :func:`merge_export_manifests`, which write one
manifest over those partitions. The operator only checks arguments and hands over to
``_export.run``; everything heavy is imported inside ``execute`` so DAG files parse fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import BaseOperator

from airflow_provider_kumulos._export.options import (
    DEFAULT_CONCURRENCY,
    EXPORT_OPTIONS,
    MAX_PAGE_SIZE,
    TEMPLATED_OPTIONS,
    check_static,
)
from airflow_provider_kumulos._progress import DEFAULT_INTERVAL, check_interval
from airflow_provider_kumulos.hooks._params import SYNC_PARAMS, check_hook_params

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

    from airflow_provider_kumulos._export.formats import ExportFormat
    from airflow_provider_kumulos._export.options import ExportOptions
    from airflow_provider_kumulos.hooks._config import ClientConfig

__all__ = [
    "ExportUsersOperator",
    "WriteExportManifestOperator",
    "merge_export_manifests",
    "plan_export_partitions",
]


class ExportUsersOperator(BaseOperator):
    """Export Kumulos users page by page to ``output_path`` (any object storage) or to XCom.

    :param kumulos_conn_id: Kumulos connection (login = API key, password = server key).
    :param page_size: users per request, 1..1000.
    :param output_path: local path or URL (``s3://conn_id@bucket/key``...); the file appears only
        once the export succeeded. With ``split_every`` it is the folder for part files. Without
        it, the users are returned through XCom (up to ``max_xcom_users``). Templated.
    :param format: ``jsonl`` (default, users exactly as the API sends them), ``json`` (one
        array), ``csv`` or ``parquet`` (extra ``parquet``). See docs/export.md for layouts.
    :param compression: None or ``"gzip"`` (text formats; the path is used as given).
    :param max_xcom_users: most users returned through XCom; more fails fast, before paging on.
    :param fields: top-level user keys to keep (``identifier`` always kept). Templated.
    :param include_installs: False drops each user's ``installs``.
    :param updated_since: keep users whose ``updated_since_field`` is at or after this
        timezone-aware time (e.g. ``"{{ data_interval_start }}"``). Templated.
    :param updated_since_field: ``updatedAt`` (default), ``lastActive``, ``createdAt`` or ``firstActive``.
    :param on_count_mismatch: ``"warn"`` or ``"fail"`` (publish nothing) when the users exported
        disagree with ``totalUsers`` because the user set changed while paging.
    :param split_every: write part files of this many users plus ``_manifest.json`` (written last);
        with Airflow's task state store (3.3+) a retry resumes after the last finished part.
    :param start_page: first page to fetch (for partitioned exports). Templated.
    :param end_page: last page to fetch, inclusive; None runs to the end. Templated.
    :param attribute_columns: csv only: attribute keys given their own column (default: the keys
        of the first page). Templated.
    :param max_concurrency: requests to Kumulos in flight at once (1..8, default 2): the next
        pages are fetched while the current one is written, in page order.
    :param hook_params: arguments for ``KumulosCRMHook`` (``timeout``, ``connect_timeout``,
        ``max_retries``, ``backoff_base``, ``backoff_max``, ``max_retry_after``, ``verify``,
        ``pool_size``, ``max_requests_per_second``); checked when the operator is built.
    :param progress_interval: seconds between progress lines in the task log (default 10).

    The export options (every parameter but ``kumulos_conn_id``, ``hook_params`` and
    ``progress_interval``) are declared once, with their checks, in ``_export.options``; the
    keyword parameters below mirror that list for IDEs and docs (a test keeps them in step).
    """

    template_fields: Sequence[str] = ("kumulos_conn_id", *TEMPLATED_OPTIONS)

    def __init__(
        self,
        *,
        kumulos_conn_id: str = "kumulos_default",
        page_size: int = MAX_PAGE_SIZE,
        output_path: Any = None,
        format: str = "jsonl",
        compression: str | None = None,
        max_xcom_users: int = 10_000,
        fields: list[str] | str | None = None,
        include_installs: bool = True,
        updated_since: Any = None,
        updated_since_field: str = "updatedAt",
        on_count_mismatch: str = "warn",
        split_every: int | None = None,
        start_page: int | str = 1,
        end_page: int | str | None = None,
        attribute_columns: list[str] | str | None = None,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        hook_params: dict[str, Any] | None = None,
        progress_interval: float = DEFAULT_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        arguments = locals()  # the parameters, read by name from the list of export options
        options = {option.name: arguments[option.name] for option in EXPORT_OPTIONS}
        check_static(options)
        for name, value in options.items():
            setattr(self, name, value)
        self.kumulos_conn_id = kumulos_conn_id
        self.hook_params = check_hook_params(hook_params, SYNC_PARAMS)
        self.progress_interval = check_interval(progress_interval)
        #: What lineage is built from, kept as plain values until the OpenLineage listener asks.
        self._ran: tuple[ClientConfig, ExportOptions, ExportFormat, Any] | None = None

    def execute(self, context: Context) -> Any:
        """Validate the rendered arguments, run the export, return users or the summary dict."""
        from airflow_provider_kumulos._export.options import build_options
        from airflow_provider_kumulos._export.run import ExportRun
        from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

        options = build_options({option.name: getattr(self, option.name) for option in EXPORT_OPTIONS})
        state_store = cast("dict[str, Any]", context).get("task_state_store")
        hook = KumulosCRMHook(self.kumulos_conn_id, **self.hook_params)
        try:
            export = ExportRun(hook, options, self.log, state_store, self.progress_interval)
            result = export.run()
        finally:
            hook.close()
        self._ran = (hook.config, options, export.fmt, result)
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """OpenLineage: the Kumulos users in, the written file or folder out (see docs/observability.md)."""
        if self._ran is None:
            return None
        from airflow_provider_kumulos._lineage import export_lineage, operator_lineage

        return operator_lineage(export_lineage(*self._ran))


def plan_export_partitions(
    kumulos_conn_id: str = "kumulos_default",
    partitions: int | None = None,
    pages_per_partition: int | None = None,
    page_size: int = MAX_PAGE_SIZE,
    output_path: str | None = None,
    suffix: str = "",
    hook_params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Plan page windows for ``ExportUsersOperator.partial(...).expand_kwargs(plan)`` with one count request.

    Returns one kwargs dict per partition: ``start_page``, ``end_page`` (None for the last,
    open-ended window) and ``page_size`` (so do not pass ``page_size`` to ``partial``), plus
    ``output_path`` = ``<output_path>/partition-00000<suffix>`` when ``output_path`` is given.
    Call it inside a ``@task`` so the count is taken when the DAG runs, not when it is parsed.
    """
    from airflow_provider_kumulos._export.partitions import check_plan_arguments, plan_partitions
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

    check_plan_arguments(partitions, pages_per_partition, page_size)
    hook = KumulosCRMHook(kumulos_conn_id, **check_hook_params(hook_params, SYNC_PARAMS))
    try:
        total_users = hook.fetch_users_page(1, 1).total_users
    finally:
        hook.close()
    return plan_partitions(
        total_users,
        page_size,
        partitions=partitions,
        pages_per_partition=pages_per_partition,
        output_path=output_path,
        suffix=suffix,
    )


def merge_export_manifests(
    summaries: Sequence[dict[str, Any]], output_path: str, check_duplicates: bool = True
) -> dict[str, Any]:
    """Write one manifest at ``output_path`` over the partitions whose export summaries are given.

    Reports cross-partition duplicates (users that moved between page windows while partitions ran)
    and page windows no partition covered. Usable from a ``@task``.
    """
    from airflow_provider_kumulos._export.partitions import merge_export_manifests as merge

    return merge(summaries, output_path, check_duplicates)


class WriteExportManifestOperator(BaseOperator):
    """Write one manifest over a partitioned export (the summaries of mapped ExportUsersOperator tasks).

    :param summaries: the partitions' return values, usually ``export.output`` of the mapped task.
    :param output_path: where the merged manifest goes (e.g. ``s3://aws_default@bucket/users/_manifest.json``).
    :param check_duplicates: read the partitions' identifiers back to count cross-partition duplicates.
    """

    template_fields: Sequence[str] = ("summaries", "output_path")

    def __init__(
        self, *, summaries: Any, output_path: str, check_duplicates: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.summaries = summaries
        self.output_path = output_path
        self.check_duplicates = check_duplicates

    def execute(self, context: Context) -> dict[str, Any]:
        """Merge, log one summary line, return the merged summary."""
        summary = merge_export_manifests(list(self.summaries), self.output_path, self.check_duplicates)
        self.log.info(
            "Export manifest written: %d partitions, %d files, %d users, %s cross-partition duplicates, gaps: %s",
            summary["partitions"],
            summary["files"],
            summary["users_written"],
            summary["cross_partition_duplicates"],
            summary["page_gaps"] or "none",
        )
        return summary
