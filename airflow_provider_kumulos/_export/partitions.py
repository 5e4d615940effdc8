"""Split the page range into windows that mapped export tasks fetch in parallel.

The plan comes from one ``totalUsers`` reading. The last window is open-ended (``end_page=None``)
so users added after planning are still exported by someone; each window gets its own
``output_path`` under the common base so partitions never overwrite each other.
"""

from __future__ import annotations

import math
from typing import Any

from airflow_provider_kumulos._checks import check_whole_number
from airflow_provider_kumulos._export.options import check_page_size
from airflow_provider_kumulos.exceptions import KumulosInputError


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
