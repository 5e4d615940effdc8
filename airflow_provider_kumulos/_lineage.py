"""OpenLineage datasets of Kumulos tasks: the app's users, and the files exports write and bulk writes read.

Operators keep what lineage needs as plain values while they run. Only the OpenLineage provider's
listener, asking for the facets once the task ends (``get_openlineage_facets_on_complete``), imports
this module: it builds the datasets (:func:`export_lineage`, :func:`bulk_lineage`) and the facets
(:func:`operator_lineage`), so deployments without ``apache-airflow-providers-openlineage`` pay nothing. Naming follows the OpenLineage
conventions: namespace ``file`` and the absolute path for local files, ``s3://<bucket>`` (``gs://``...)
and the key for object storage, ``kumulos://<host>/<app>`` and ``users`` for a Kumulos app, where
``<app>`` is a digest of the API key (the server key is never used).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_kumulos._users import USER

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_kumulos._export.formats import ExportFormat
    from airflow_provider_kumulos._export.options import ExportOptions
    from airflow_provider_kumulos.hooks._config import ClientConfig

#: Name of the Kumulos users dataset within its app's namespace.
USERS_DATASET = "users"
#: Hex digits of the API key's SHA-256 that name the app in the namespace.
APP_DIGITS = 16
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Column:
    """One field of a dataset's schema."""

    name: str
    type: str
    description: str | None = None


@dataclass(frozen=True)
class DatasetFacts:
    """A dataset as lineage reports it; ``rows`` and ``nbytes`` only for what this task wrote."""

    namespace: str
    name: str
    columns: tuple[Column, ...] = ()
    rows: int | None = None
    nbytes: int | None = None


@dataclass(frozen=True)
class LineageFacts:
    """What one task read and wrote."""

    inputs: tuple[DatasetFacts, ...] = ()
    outputs: tuple[DatasetFacts, ...] = ()


#: A Kumulos user object as the API documents it (and as jsonl/json exports hold it); times are strings.
USER_COLUMNS = tuple(
    Column(field.name, "string" if field.kind == "timestamp" else field.kind, field.description)
    for field in USER
)


def kumulos_users(config: ClientConfig, rows: int | None = None) -> DatasetFacts:
    """The users of the Kumulos app behind ``config``: ``kumulos://<host>/<app>``, name ``users``."""
    parts = urlsplit(config.base_url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host += f":{parts.port}"
    app = hashlib.sha256(config.api_key.encode("utf-8")).hexdigest()[:APP_DIGITS]
    return DatasetFacts(f"kumulos://{host}/{app}", USERS_DATASET, USER_COLUMNS, rows=rows)


def storage_dataset(
    path: Any, columns: Sequence[Column] = (), rows: int | None = None, nbytes: int | None = None
) -> DatasetFacts:
    """A file or folder on any object storage, named as OpenLineage names files (no connection id)."""
    from airflow_provider_kumulos._storage import resolve_path

    parts = urlsplit(str(resolve_path(path)))
    if parts.scheme in ("", "file"):
        namespace, name = "file", parts.path.rstrip("/") or "/"
    else:
        bucket = parts.netloc.rpartition("@")[
            2
        ]  # s3://conn_id@bucket/key: the conn id is Airflow's, not the data's
        namespace, name = f"{parts.scheme}://{bucket}", parts.path.strip("/")
    return DatasetFacts(namespace, name, tuple(columns), rows=rows, nbytes=nbytes)


def export_columns(fmt: ExportFormat) -> tuple[Column, ...]:
    """The schema an export wrote: the user keys kept (jsonl, json), csv's columns or parquet's typed ones."""
    if fmt.name == "csv":
        from airflow_provider_kumulos._export.formats import CsvLayout

        header = CsvLayout(fmt.kept_fields, fmt.attribute_keys).header()
        described = {column.name: column.description for column in USER_COLUMNS}
        return tuple(Column(name, "string", described.get(name)) for name in header)
    if fmt.name == "parquet":
        from airflow_provider_kumulos._export.formats import schema

        return tuple(Column(field.name, str(field.type)) for field in schema(fmt.kept_fields))
    return tuple(column for column in USER_COLUMNS if column.name in fmt.kept_fields)


def export_lineage(
    config: ClientConfig, options: ExportOptions, fmt: ExportFormat, summary: Any
) -> LineageFacts:
    """An export read the app's users and wrote ``output_path`` (nothing, when users went to XCom)."""
    source = (kumulos_users(config),)
    if options.output_path is None:
        return LineageFacts(inputs=source)
    written = storage_dataset(
        options.output_path, export_columns(fmt), rows=summary["users_written"], nbytes=summary["bytes"]
    )
    return LineageFacts(inputs=source, outputs=(written,))


def bulk_lineage(source_path: Any, config: ClientConfig | None, written: int) -> LineageFacts:
    """A bulk write read ``source_path`` (if any) and wrote ``written`` users' attributes (None: dry run)."""
    inputs = () if source_path is None else (storage_dataset(source_path),)
    outputs = () if config is None else (kumulos_users(config, rows=written),)
    return LineageFacts(inputs=inputs, outputs=outputs)


def operator_lineage(facts: LineageFacts | None) -> OperatorLineage | None:
    """OpenLineage's ``OperatorLineage`` for ``facts``; None without facts or without the provider."""
    if facts is None:
        return None
    try:
        from airflow.providers.common.compat.openlineage.facet import (
            InputDataset,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
            SchemaDatasetFacet,
            SchemaDatasetFacetFields,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None

    def facets(dataset: DatasetFacts) -> dict[str, Any]:
        if not dataset.columns:
            return {}
        fields = [
            SchemaDatasetFacetFields(name=column.name, type=column.type, description=column.description)
            for column in dataset.columns
        ]
        return {"schema": SchemaDatasetFacet(fields=fields)}

    def statistics(dataset: DatasetFacts) -> dict[str, Any]:
        if dataset.rows is None:
            return {}
        return {
            "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=dataset.rows, size=dataset.nbytes)
        }

    return OperatorLineage(
        inputs=[InputDataset(namespace=d.namespace, name=d.name, facets=facets(d)) for d in facts.inputs],
        outputs=[
            OutputDataset(namespace=d.namespace, name=d.name, facets=facets(d), outputFacets=statistics(d))
            for d in facts.outputs
        ],
    )
