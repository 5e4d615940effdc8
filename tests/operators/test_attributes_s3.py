"""Bulk attribute writes with sources and failures files on S3 (moto's server), through ObjectStoragePath."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest

from airflow_provider_kumulos.operators.kumulos import DeleteAttributesOperator, SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

pytestmark = pytest.mark.s3


def keys(s3_client: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_jsonl_gz_and_csv_sources_on_s3_reach_the_intended_state(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    emu = kumulos_connection
    jsonl = "".join(json.dumps({"identifier": f"j{i}", "attributes": {"i": i}}) + "\n" for i in range(40))
    s3_client.put_object(Bucket=s3_bucket, Key="in/users.jsonl.gz", Body=gzip.compress(jsonl.encode()))
    csv_text = "identifier,score,vip\n" + "".join(f"c{i},{i / 2},{i % 2}\n" for i in range(40))
    s3_client.put_object(Bucket=s3_bucket, Key="in/users.csv", Body=csv_text.encode())

    first = SetAttributesOperator(
        task_id="t", source_path=f"s3://aws_default@{s3_bucket}/in/users.jsonl.gz", max_concurrency=4
    ).execute({})
    second = SetAttributesOperator(
        task_id="t",
        source_path=f"s3://aws_default@{s3_bucket}/in/users.csv",
        attribute_types={"score": "float", "vip": "bool"},
    ).execute({})
    assert (first["succeeded"], second["succeeded"]) == (40, 40)
    assert [emu.get_attributes(f"j{i}") for i in range(40)] == [{"i": i} for i in range(40)]
    assert [emu.get_attributes(f"c{i}") for i in range(40)] == [
        {"score": i / 2, "vip": bool(i % 2)} for i in range(40)
    ]


def test_failures_file_on_s3_is_published_whole_and_converges_when_fed_back(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    emu = kumulos_connection
    emu.reject_users({f"u{i}": (422, {"errors": {"attributes": ["invalid"]}}) for i in (3, 7)})
    records = [{"identifier": f"u{i}", "attributes": {"i": i}} for i in range(10)]
    failures = f"s3://aws_default@{s3_bucket}/runs/failed.jsonl"
    summary = SetAttributesOperator(
        task_id="t", records=records, max_failures=2, failures_path=failures
    ).execute({})
    assert summary["failures_path"] == failures
    assert keys(s3_client, s3_bucket) == ["runs/failed.jsonl"]  # no temporary object left behind
    body = s3_client.get_object(Bucket=s3_bucket, Key="runs/failed.jsonl")["Body"].read()
    lines = sorted((json.loads(line) for line in body.splitlines()), key=lambda line: line["identifier"])
    assert [(line["identifier"], line["attributes"], line["error"]["status"]) for line in lines] == [
        ("u3", {"i": 3}, 422),
        ("u7", {"i": 7}, 422),
    ]

    emu.reject_users({})
    retried = SetAttributesOperator(task_id="t", source_path=failures).execute({})
    assert (retried["total"], retried["succeeded"]) == (2, 2)
    assert [emu.get_attributes(f"u{i}") for i in range(10)] == [{"i": i} for i in range(10)]


def test_a_bulk_write_aborts_the_unfinished_upload_of_its_failures_file_only(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    for key in (
        "runs/failed.jsonl",
        "runs/failed.jsonl.old",
        "other/failed.jsonl",
    ):  # as killed writers left them
        s3_client.create_multipart_upload(Bucket=s3_bucket, Key=key)
    SetAttributesOperator(
        task_id="t",
        records=[{"identifier": "u1", "attributes": {"i": 1}}],
        failures_path=f"s3://aws_default@{s3_bucket}/runs/failed.jsonl",
    ).execute({})
    uploads = s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert sorted(upload["Key"] for upload in uploads) == ["other/failed.jsonl", "runs/failed.jsonl.old"]
    assert keys(s3_client, s3_bucket) == ["runs/failed.jsonl"]


def test_delete_from_a_text_file_on_s3(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    emu = kumulos_connection
    ids = emu.user_ids()[:15]
    s3_client.put_object(Bucket=s3_bucket, Key="ids.txt", Body="\n".join(ids).encode())
    summary = DeleteAttributesOperator(
        task_id="t", source_path=f"s3://aws_default@{s3_bucket}/ids.txt"
    ).execute({})
    assert (summary["succeeded"], summary["failed"]) == (15, 0)
    assert [emu.get_attributes(ident) for ident in ids] == [{}] * 15
