"""plan_export_partitions (one count request) and merging partition outputs into one manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_export_support import read_jsonl, run_export

from airflow_provider_kumulos._export.partitions import plan_partitions
from airflow_provider_kumulos.exceptions import KumulosInputError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.operators.export import merge_export_manifests, plan_export_partitions
from airflow_provider_kumulos.testing.emulator import KumulosEmulator


def test_plan_makes_one_count_request(kumulos_connection: KumulosEmulator) -> None:
    plan = plan_export_partitions(partitions=4, page_size=10, output_path="s3://aws_default@bucket/users/")
    assert len(kumulos_connection.requests) == 1
    assert kumulos_connection.requests[0].query == {"currentPage": ["1"], "numberPerPage": ["1"]}
    assert plan == [
        {
            "start_page": 1,
            "end_page": 2,
            "page_size": 10,
            "output_path": "s3://aws_default@bucket/users/partition-00000",
        },
        {
            "start_page": 3,
            "end_page": 4,
            "page_size": 10,
            "output_path": "s3://aws_default@bucket/users/partition-00001",
        },
        {
            "start_page": 5,
            "end_page": None,
            "page_size": 10,
            "output_path": "s3://aws_default@bucket/users/partition-00002",
        },
    ]


@pytest.mark.parametrize(
    ("total", "kwargs", "windows"),
    [
        (0, {"partitions": 3}, [(1, None)]),
        (10_000, {"partitions": 3}, [(1, 4), (5, 8), (9, None)]),
        (10_001, {"pages_per_partition": 5}, [(1, 5), (6, 10), (11, None)]),
        (999, {"partitions": 1}, [(1, None)]),
    ],
)
def test_plan_windows_cover_every_page_and_end_open(total: int, kwargs: dict, windows: list) -> None:
    plan = plan_partitions(total, 1000, **kwargs)
    assert [(p["start_page"], p["end_page"]) for p in plan] == windows
    assert all("output_path" not in p for p in plan)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({}, "partitions / pages_per_partition"),
        ({"partitions": 2, "pages_per_partition": 2}, "partitions / pages_per_partition"),
        ({"partitions": 0}, "partitions"),
        ({"pages_per_partition": True}, "pages_per_partition"),
        ({"partitions": 2, "page_size": 5000}, "page_size"),
        ({"partitions": 2, "hook_params": {"retries": 1}}, "hook_params"),
    ],
)
def test_plan_arguments_are_checked_before_the_count(
    kumulos_connection: KumulosEmulator, kwargs: dict, parameter: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        plan_export_partitions(**kwargs)
    assert caught.value.parameter == parameter
    assert kumulos_connection.requests == []


def test_merge_counts_users_that_moved_between_partitions(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    plan = plan_export_partitions(partitions=2, page_size=10, output_path=str(tmp_path), suffix=".jsonl")
    first = run_export(**plan[0])
    # 15 users inserted at random places between the two partitions push users of window 1 into window 2.
    kumulos_connection.schedule_drift(after_requests=1, add=15)
    KumulosCRMHook().fetch_users_page(1, 1)
    second = run_export(**plan[1])

    summary = merge_export_manifests([second, first], str(tmp_path / "_manifest.json"))
    ids = [u["identifier"] for s in (first, second) for u in read_jsonl(Path(s["path"]).read_bytes())]
    duplicates = len(ids) - len(set(ids))
    assert duplicates > 0
    assert summary["cross_partition_duplicates"] == duplicates
    assert summary["unique_users"] == len(set(ids))
    assert summary["users_written"] == len(ids)
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    assert manifest["complete"] is True
    assert [entry["start_page"] for entry in manifest["partitions"]] == [1, 4]
    assert 0 < len(manifest["duplicate_examples"]) <= 5
    assert set(manifest["duplicate_examples"]) <= set(ids)
    assert manifest["partitions"][0]["files"][0]["sha256"] == first["sha256"]


def test_merge_of_partitions_written_as_parts(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    plan = plan_export_partitions(pages_per_partition=2, page_size=10, output_path=str(tmp_path / "p"))
    summaries = [run_export(split_every=7, format="csv", compression="gzip", **kwargs) for kwargs in plan]
    summary = merge_export_manifests(summaries, str(tmp_path / "_manifest.json"))
    assert summary["partitions"] == 3
    assert summary["files"] == 3 + 3 + 2  # 20, 20 and 10 users in parts of 7
    assert summary["users_written"] == summary["unique_users"] == 50
    assert summary["cross_partition_duplicates"] == 0
    assert summary["page_gaps"] == []


def test_merge_reports_page_gaps(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    first = run_export(output_path=str(tmp_path / "a.jsonl"), page_size=10, start_page=1, end_page=2)
    last = run_export(output_path=str(tmp_path / "b.jsonl"), page_size=10, start_page=4, end_page=4)
    summary = merge_export_manifests([first, last], str(tmp_path / "m.json"), check_duplicates=False)
    assert summary["page_gaps"] == ["pages 3-3", "pages 5 and after"]
    assert summary["cross_partition_duplicates"] is None


@pytest.mark.parametrize(
    "summaries",
    [
        [],
        [None],
        [{"users_written": 3}],
        [{"path": "/a", "format": "jsonl"}, {"path": "/b", "format": "csv"}],
    ],
)
def test_merge_rejects_what_is_not_export_summaries(summaries: list, tmp_path: Path) -> None:
    with pytest.raises(KumulosInputError) as caught:
        merge_export_manifests(summaries, str(tmp_path / "m.json"))
    assert caught.value.parameter == "summaries"
    assert not (tmp_path / "m.json").exists()
