"""DAGs of the deployment test's fault scenarios (``tests/e2e/e2e_chaos.py``), not examples.

Every output and input location comes from the run's conf, so each scenario run writes to a
folder of its own. Task retries are short (seconds) so a recovery is seen within the test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Param, dag

from airflow_provider_kumulos.operators.kumulos import ExportUsersOperator, SetAttributesOperator

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
FOLDER = "{{ params.folder }}"
#: Users per part file of the resumable export, and users per request (5 pages per part).
SPLIT_EVERY, PAGE_SIZE = 100, 20
#: Seconds between saves of the sync state in ``kumulos_e2e_bulk_worker_lost_sync``.
CHECKPOINT_INTERVAL = 2.0


def _folder_param() -> Param:
    return Param("file:///tmp/kumulos-e2e-chaos", type="string", description="Output folder URL")


@dag(
    dag_id="kumulos_e2e_export_resume",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"folder": _folder_param()},
    tags=["kumulos", "e2e"],
)
def kumulos_e2e_export_resume() -> None:
    """A split export whose task is killed mid-part, and the same export undisturbed beside it.

    The reference asks for the users in one page, so its requests are told apart from the killed
    task's in the emulator's log; the part files do not depend on the page size.
    """
    ExportUsersOperator(
        task_id="export",
        output_path=f"{FOLDER}/killed",
        page_size=PAGE_SIZE,
        split_every=SPLIT_EVERY,
        retries=2,
        retry_delay=timedelta(seconds=2),
    )
    ExportUsersOperator(
        task_id="reference", output_path=f"{FOLDER}/reference", page_size=1000, split_every=SPLIT_EVERY
    )


@dag(
    dag_id="kumulos_e2e_export_outage",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"folder": _folder_param()},
    tags=["kumulos", "e2e"],
)
def kumulos_e2e_export_outage() -> None:
    """A single-file export that meets an API outage longer than the connection's retries."""
    ExportUsersOperator(
        task_id="export",
        output_path=f"{FOLDER}/users.jsonl",
        page_size=PAGE_SIZE,
        retries=5,
        retry_delay=timedelta(seconds=5),
    )


@dag(
    dag_id="kumulos_e2e_bulk_worker_lost",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "source": Param("file:///tmp/kumulos-e2e-chaos/updates.jsonl", type="string"),
        "failures": Param("file:///tmp/kumulos-e2e-chaos/failures.jsonl", type="string"),
    },
    tags=["kumulos", "e2e"],
)
def kumulos_e2e_bulk_worker_lost() -> None:
    """A bulk attribute write from a JSONL file, whose Celery worker is killed while it runs.

    ``reconcile=True``: each try first reads what Kumulos holds, so the retry skips the users the
    killed try already wrote."""
    SetAttributesOperator(
        task_id="set_attributes",
        source_path="{{ params.source }}",
        failures_path="{{ params.failures }}",
        reconcile=True,
        max_concurrency=4,
        retries=2,
        retry_delay=timedelta(seconds=2),
    )


@dag(
    dag_id="kumulos_e2e_bulk_worker_lost_sync",
    schedule=None,
    start_date=START,
    catchup=False,
    params={
        "source": Param("file:///tmp/kumulos-e2e-chaos/updates.jsonl", type="string"),
        "failures": Param("file:///tmp/kumulos-e2e-chaos/failures.jsonl", type="string"),
        "state": Param("file:///tmp/kumulos-e2e-chaos/state.sqlite", type="string"),
    },
    tags=["kumulos", "e2e"],
)
def kumulos_e2e_bulk_worker_lost_sync() -> None:
    """The same bulk write keeping a sync state, saved every ``CHECKPOINT_INTERVAL`` seconds: the
    retry skips the users the killed try wrote before its last checkpoint."""
    SetAttributesOperator(
        task_id="set_attributes",
        source_path="{{ params.source }}",
        failures_path="{{ params.failures }}",
        sync_state_path="{{ params.state }}",
        checkpoint_interval=CHECKPOINT_INTERVAL,
        max_concurrency=4,
        retries=2,
        retry_delay=timedelta(seconds=2),
    )


kumulos_e2e_export_resume()
kumulos_e2e_export_outage()
kumulos_e2e_bulk_worker_lost()
kumulos_e2e_bulk_worker_lost_sync()
