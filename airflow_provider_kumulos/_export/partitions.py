"""Partitioned exports: split the page range into windows for mapped tasks, then merge their manifests.

The plan comes from one ``totalUsers`` reading. The last window is open-ended (``end_page=None``)
so users added after planning are still exported by someone; each window gets its own
``output_path`` under the common base so partitions never overwrite each other.

Each partition exports its page window on its own, so a user who moved between windows while they
ran can appear in two partitions. The merge lists every file of every partition (with users, bytes
and SHA-256), checks the windows cover every page, and reads the identifiers back to count such
cross-partition duplicates (a few are named as examples). Memory: the dedupe table only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_provider_kumulos._checks import check_whole_number
from airflow_provider_kumulos._dedupe import SeenIdentifiers
from airflow_provider_kumulos._export.formats import read_identifiers
from airflow_provider_kumulos._export.manifest import MANIFEST_VERSION, read_manifest, write_json
from airflow_provider_kumulos._export.options import check_page_size
from airflow_provider_kumulos._storage import resolve_path, shown_path
from airflow_provider_kumulos.exceptions import KumulosInputError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


# --- Planning -----------------------------------------------------------------------------------------------


def check_plan_arguments(partitions: object, pages_per_partition: object, page_size: object) -> None:
    """Exactly one of ``partitions`` / ``pages_per_partition``, each a whole number >= 1."""
    check_page_size(page_size)
    given = {"partitions": partitions, "pages_per_partition": pages_per_partition}
    chosen = {name: value for name, value in given.items() if value is not None}
    if len(chosen) != 1:
        raise KumulosInputError(
            "partitions / pages_per_partition",
            f"got {' and '.join(chosen) or 'neither'}",
            "Pass exactly one: partitions=N (N windows) or pages_per_partition=M (M pages per window).",
        )
    for name, value in chosen.items():
        check_whole_number(name, value, 1, fix=f"Pass {name} >= 1.")


def plan_partitions(
    total_users: int,
    page_size: int,
    *,
    partitions: int | None = None,
    pages_per_partition: int | None = None,
    output_path: str | None = None,
    suffix: str = "",
) -> list[dict[str, Any]]:
    """Keyword-argument dicts for ``ExportUsersOperator.partial(...).expand_kwargs(...)``."""
    check_plan_arguments(partitions, pages_per_partition, page_size)
    total_pages = max(1, math.ceil(total_users / page_size))
    per_partition = pages_per_partition or math.ceil(total_pages / (partitions or 1))
    count = math.ceil(total_pages / per_partition)
    plan = []
    for index in range(count):
        start = index * per_partition + 1
        kwargs: dict[str, Any] = {
            "start_page": start,
            "end_page": None if index == count - 1 else start + per_partition - 1,
            "page_size": page_size,
        }
        if output_path is not None:
            kwargs["output_path"] = f"{output_path.rstrip('/')}/partition-{index:05d}{suffix}"
        plan.append(kwargs)
    return plan


# --- Merging partition manifests ----------------------------------------------------------------------------

#: How many duplicated identifiers the merged manifest names.
MAX_DUPLICATE_EXAMPLES = 5


def _checked(summaries: Iterable[Any]) -> list[dict[str, Any]]:
    checked = [summary for summary in summaries]
    fix = "Pass the return values of ExportUsersOperator tasks that had an output_path (e.g. export.output)."
    if not checked:
        raise KumulosInputError("summaries", "there is no partition to merge", fix)
    for summary in checked:
        if not isinstance(summary, dict) or not summary.get("path") or "format" not in summary:
            raise KumulosInputError("summaries", f"{summary!r} is not an export summary", fix)
    kinds = {(summary["format"], summary.get("compression")) for summary in checked}
    if len(kinds) > 1:
        raise KumulosInputError(
            "summaries",
            f"partitions use different formats {sorted(map(str, kinds))}",
            "Export every partition alike.",
        )
    return sorted(checked, key=lambda summary: int(summary.get("start_page") or 1))


def _files(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file of one partition, as manifest entries with full paths."""
    if summary.get("manifest"):
        manifest = read_manifest(resolve_path(summary["manifest"]), parameter="summaries")
        directory = resolve_path(summary["path"])
        return [
            {**part, "path": shown_path(directory / part["name"], summary["path"])}
            for part in manifest["parts"]
        ]
    return [
        {
            "path": summary["path"],
            "users": summary["users_written"],
            "bytes": summary["bytes"],
            "sha256": summary["sha256"],
        }
    ]


def _gaps(summaries: list[dict[str, Any]]) -> list[str]:
    """Page windows not covered by any partition (the last one must be open-ended)."""
    gaps, expected = [], 1
    for summary in summaries:
        start, end = int(summary.get("start_page") or 1), summary.get("end_page")
        if start > expected:
            gaps.append(f"pages {expected}-{start - 1}")
        if end is None:
            return gaps
        expected = max(expected, int(end) + 1)
    gaps.append(f"pages {expected} and after")
    return gaps


def merge_export_manifests(
    summaries: Iterable[Any], output_path: str | ObjectStoragePath, check_duplicates: bool = True
) -> dict[str, Any]:
    """Write one manifest over all partitions at ``output_path``; returns its summary."""
    partitions = _checked(summaries)
    target = resolve_path(output_path, parameter="output_path")
    fmt, compression = partitions[0]["format"], partitions[0].get("compression")
    entries = [
        {
            "start_page": summary.get("start_page"),
            "end_page": summary.get("end_page"),
            "users_written": summary["users_written"],
            "total_users_start": summary.get("total_users_start"),
            "total_users_end": summary.get("total_users_end"),
            "count_mismatch": summary.get("count_mismatch"),
            "files": _files(summary),
        }
        for summary in partitions
    ]
    duplicates = 0
    examples: list[str] = []
    if check_duplicates:
        seen = SeenIdentifiers()
        for entry in entries:
            for file in entry["files"]:
                for identifier in read_identifiers(resolve_path(file["path"]), fmt, compression):
                    if not seen.add(identifier):
                        duplicates += 1
                        if len(examples) < MAX_DUPLICATE_EXAMPLES:
                            examples.append(identifier)
    users = sum(entry["users_written"] for entry in entries)
    summary = {
        "manifest": shown_path(target, output_path),
        "format": fmt,
        "compression": compression,
        "partitions": len(entries),
        "files": sum(len(entry["files"]) for entry in entries),
        "users_written": users,
        "bytes": sum(file["bytes"] for entry in entries for file in entry["files"]),
        "cross_partition_duplicates": duplicates if check_duplicates else None,
        "unique_users": users - duplicates if check_duplicates else None,
        "page_gaps": _gaps(partitions),
    }
    write_json(
        target,
        {
            "version": MANIFEST_VERSION,
            "complete": True,
            "partitions": entries,
            "duplicate_examples": examples,
            "summary": summary,
        },
    )
    return summary
