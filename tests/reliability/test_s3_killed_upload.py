"""Scenario 8, an export to S3 killed mid-upload: nothing published, and the next run leaves no upload behind.

The export runs in a child process writing ``s3://aws_default@<bucket>/exports/users.jsonl`` on moto's
S3 server with parts of S3's smallest size (5 MiB), so that its multipart upload is under way long
before the end; it is killed (SIGKILL) once a part is up. Nothing may then be at the final key, and
the killed run's incomplete upload is there, billed until someone aborts it. The export is then
simply run again, in a new process: it must abort that upload (and only that one: uploads of
other writers in the same bucket, one of them at a key that merely starts with the export's), and
publish the complete file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from reliability_support import Figures, Stopwatch

from airflow_provider_kumulos.testing.emulator import KumulosEmulator

CONN_ID = "kumulos_s3_kill"
USERS = 20_000  # about 22 MB of JSON Lines: four 5 MiB parts and a last one
PAGE_SIZE = 500
#: Seconds the emulator adds to each answer, so that the kill lands mid-upload.
LATENCY = 0.1
KEY = "exports/users.jsonl"
FOREIGN_KEYS = ("exports/users.jsonl.other-tool", "elsewhere/users.jsonl")
PROCESS_TIMEOUT = 240.0

EXPORT = """
import s3fs

s3fs.S3FileSystem.default_block_size = 5 << 20  # S3's smallest part: the upload starts early

from airflow_provider_kumulos.operators.export import ExportUsersOperator

ExportUsersOperator(
    task_id="export", kumulos_conn_id={conn_id!r}, output_path={url!r}, page_size={page_size}
).execute({{}})
"""


def _uploads(s3_client: Any, bucket: str) -> dict[str, str]:
    """``UploadId -> Key`` of every incomplete multipart upload in ``bucket``."""
    listing = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return {upload["UploadId"]: upload["Key"] for upload in listing}


def _export_process(url: str) -> subprocess.Popen[str]:
    script = EXPORT.format(conn_id=CONN_ID, url=url, page_size=PAGE_SIZE)
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _parts_uploaded(s3_client: Any, bucket: str) -> int:
    """Parts of the export's upload already on S3 (0 while it has none)."""
    for upload_id, key in _uploads(s3_client, bucket).items():
        if key == KEY:
            return len(s3_client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", []))
    return 0


@pytest.mark.s3
@pytest.mark.slow
def test_killed_s3_export_leaves_no_upload_after_the_next_run(
    emulator_factory: Callable[..., KumulosEmulator],
    connect: Callable[..., str],
    s3_bucket: str,
    s3_client: Any,
    figures: Figures,
) -> None:
    watch = Stopwatch()
    emulator = emulator_factory(users=USERS, latency=LATENCY)
    connect(emulator, conn_id=CONN_ID)
    foreign = {
        s3_client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]: key for key in FOREIGN_KEYS
    }
    url = f"s3://aws_default@{s3_bucket}/{KEY}"

    killed = _export_process(url)
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while (parts_at_kill := _parts_uploaded(s3_client, s3_bucket)) == 0:
            assert killed.poll() is None, (
                f"the export ended before the kill:\n{killed.communicate()[0][-3000:]}"
            )
            assert time.monotonic() < deadline, "the export never started its upload"
            time.sleep(0.05)
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.communicate()
    pages_before_kill = len([r for r in emulator.requests if r.path == "/v2/users"])

    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0  # nothing published
    left_by_kill = {upload_id: key for upload_id, key in _uploads(s3_client, s3_bucket).items() if key == KEY}
    assert len(left_by_kill) == 1  # what the next run has to clean up

    rerun = _export_process(url)
    output, _ = rerun.communicate(timeout=PROCESS_TIMEOUT)
    assert rerun.returncode == 0, output[-3000:]

    assert _uploads(s3_client, s3_bucket) == foreign  # the killed run's upload is gone, no other
    assert "Removed 1 temporary file(s) or unfinished upload(s)" in output
    body = s3_client.get_object(Bucket=s3_bucket, Key=KEY)["Body"].read()
    assert body.count(b"\n") == USERS
    assert [item["Key"] for item in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == [KEY]
    figures.record(
        "8 S3 export killed mid-upload",
        users=USERS,
        bytes=len(body),
        parts_uploaded_at_kill=parts_at_kill,
        pages_before_kill=pages_before_kill,
        uploads_left_by_kill=len(left_by_kill),
        uploads_left_after_rerun=len([key for key in _uploads(s3_client, s3_bucket).values() if key == KEY]),
        foreign_uploads_untouched=f"{len(foreign)} of {len(foreign)}",
        duration_s=watch.seconds,
    )
