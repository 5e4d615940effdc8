"""Daily segment refresh: export users, compute two segment attributes, push them back to Kumulos.

1. ``export_users`` writes every user to ``{kumulos_output_base}/segments/ds=<date>/users.jsonl``.
2. ``compute_segments`` streams that file one user at a time (memory stays flat however many users
   there are) and computes, relative to the run's data interval end:

   - ``inactive_30d``: true when the user's ``lastActive`` is missing or more than 30 days old;
   - ``primary_platform``: the ``os`` (lower case) of most of the user's installs, a tie going to the
     platform of the most recently active install; ``"unknown"`` without installs.

   Users whose attributes already hold these values are left out, so a rerun sends only changes.
   The rest go to ``segments.jsonl`` (``{"identifier", "attributes"}`` per line), published
   atomically: a failed run never leaves half a segment file behind.
3. ``push_segments`` sends the file with ``SetAttributesOperator(merge=True)``. A Kumulos PUT replaces
   the user's whole attribute set, and the segment file holds only the two segment keys: ``merge``
   reads each user's current attributes right before writing them, so the name, email or plan the
   app stores survive, and anything the app changed since the export is kept too (the race window
   is one user's read-then-write, not the length of the export). It costs one extra GET per user.
   Up to 10 rejected users are tolerated and listed in ``failures.jsonl`` (feed it back as
   ``source_path`` to retry them); more fail the task.
4. ``report`` logs and returns the counts: users exported, segment sizes, attributes set, failures.

Setup: connection ``kumulos_default``; Variable ``kumulos_output_base`` (default ``file:///tmp/kumulos``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import dag, get_current_context, task

from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator, SetAttributesOperator

#: Root folder or bucket prefix of every output, from the ``kumulos_output_base`` Variable.
OUTPUT_BASE = "{{ var.value.get('kumulos_output_base', 'file:///tmp/kumulos') }}"
#: The run's ``ds``; runs triggered without a logical date use the day they were triggered.
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
#: Folder of this run's files: the export, the segment file and the failures file.
RUN_FOLDER = f"{OUTPUT_BASE}/segments/ds={RUN_DATE}"
#: Users not seen for longer than this are ``inactive_30d``.
INACTIVE_AFTER = timedelta(days=30)
#: Rejected users tolerated before ``push_segments`` fails.
MAX_FAILURES = 10

log = logging.getLogger(__name__)


def parse_time(value: object) -> datetime | None:
    """A Kumulos timestamp (ISO 8601 with offset) as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def primary_platform(installs: Iterable[Mapping[str, Any]]) -> str:
    """The lower-case ``os`` of most installs; a tie goes to the most recently active one."""
    counts: Counter[str] = Counter()
    latest: dict[str, datetime] = {}
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    for install in installs:
        platform = str(install.get("os") or "").strip().lower()
        if not platform:
            continue
        counts[platform] += 1
        active = parse_time(install.get("lastActive")) or oldest
        latest[platform] = max(latest.get(platform, oldest), active)
    if not counts:
        return "unknown"
    return max(counts, key=lambda platform: (counts[platform], latest[platform]))


def segment_attributes(user: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The segment attributes of one exported user, as of ``now``."""
    last_active = parse_time(user.get("lastActive"))
    installs = [install for install in user.get("installs") or () if isinstance(install, Mapping)]
    return {
        "inactive_30d": last_active is None or last_active < now - INACTIVE_AFTER,
        "primary_platform": primary_platform(installs),
    }


@dag(
    dag_id="kumulos_segment_refresh",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["kumulos", "example"],
)
def kumulos_segment_refresh() -> None:
    """Export users, compute ``inactive_30d`` and ``primary_platform``, set them on each user, report."""
    export = ExportUsersOperator(task_id="export_users", output_path=f"{RUN_FOLDER}/users.jsonl")

    @task
    def compute_segments(exported: dict[str, Any], folder: str) -> dict[str, Any]:
        """Stream the export into ``segments.jsonl`` (changed users only); return the segment sizes."""
        import json

        from airflow_provider_kumulos._storage import atomic_write, resolve_path

        context = get_current_context()
        now = context.get("data_interval_end") or context["dag_run"].run_after
        target = resolve_path(f"{folder}/segments.jsonl")
        users = inactive = to_update = 0
        platforms: Counter[str] = Counter()
        with resolve_path(exported["path"]).open("rb") as source, atomic_write(target, "w") as out:
            # readline rather than iteration: Airflow 3.1's object-storage file wrapper is not iterable.
            for line in iter(source.readline, b""):
                if not line.strip():
                    continue
                user = json.loads(line)
                segment = segment_attributes(user, now)
                users += 1
                inactive += int(segment["inactive_30d"])
                platforms[segment["primary_platform"]] += 1
                current = user.get("attributes") or {}
                if any(current.get(key) != value for key, value in segment.items()):
                    to_update += 1
                    out.write(json.dumps({"identifier": user["identifier"], "attributes": segment}) + "\n")
        return {
            "path": str(target),
            "users": users,
            "inactive_30d": inactive,
            "primary_platform": dict(sorted(platforms.items())),
            "to_update": to_update,
            "unchanged": users - to_update,
            "as_of": now.isoformat(),
        }

    segments = compute_segments(export.output, RUN_FOLDER)

    push = SetAttributesOperator(
        task_id="push_segments",
        source_path=segments["path"],
        merge=True,
        max_concurrency=16,
        max_failures=MAX_FAILURES,
        failures_path=f"{RUN_FOLDER}/failures.jsonl",
    )

    @task
    def report(exported: dict[str, Any], segments: dict[str, Any], pushed: dict[str, Any]) -> dict[str, Any]:
        """One summary line in the log, and the same counts as XCom."""
        summary = {
            "users_exported": exported["users_written"],
            "export_path": exported["path"],
            "segment_path": segments["path"],
            "as_of": segments["as_of"],
            "inactive_30d": segments["inactive_30d"],
            "primary_platform": segments["primary_platform"],
            "users_to_update": segments["to_update"],
            "users_unchanged": segments["unchanged"],
            "attributes_set": pushed["succeeded"],
            "failures": pushed["failed"],
            "failures_path": pushed["failures_path"],
        }
        log.info(
            "Segment refresh: %d users exported, %d inactive_30d, primary_platform %s, %d to update "
            "(%d unchanged), %d attributes set, %d failures",
            summary["users_exported"],
            summary["inactive_30d"],
            summary["primary_platform"],
            summary["users_to_update"],
            summary["users_unchanged"],
            summary["attributes_set"],
            summary["failures"],
        )
        return summary

    report(export.output, segments, push.output)


kumulos_segment_refresh()
