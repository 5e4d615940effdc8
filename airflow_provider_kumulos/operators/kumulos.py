"""Kumulos CRM operators, importable from one place (``airflow_provider_kumulos.operators.kumulos``)."""

from __future__ import annotations

from airflow_provider_kumulos.operators.attributes import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.operators.export import (
    ExportUsersOperator,
    WriteExportManifestOperator,
    merge_export_manifests,
    plan_export_partitions,
)

__all__ = [
    "DeleteAttributesOperator",
    "ExportUsersOperator",
    "SetAttributesOperator",
    "WriteExportManifestOperator",
    "merge_export_manifests",
    "plan_export_partitions",
]
