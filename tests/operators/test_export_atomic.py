"""A failed export leaves nothing at its final path: local files and S3 (moto), single file and parts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_export_support import assert_export_matches, leftovers, run_export

from airflow_provider_kumulos._storage import TEMP_PREFIX, atomic_write, resolve_path
from airflow_provider_kumulos.exceptions import KumulosAuthError, KumulosInputError, KumulosServerError
from airflow_provider_kumulos.testing.emulator import Fault, KumulosEmulator


def _fail_page_3(emulator: KumulosEmulator, fault: Fault) -> None:
    emulator.script_faults([fault], page=3)


def _keys(s3_client: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))


# --- atomic_write itself ----------------------------------------------------------------------


def test_atomic_write_publishes_on_success_only(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.txt"
    with atomic_write(str(target), "w") as stream:
        stream.write("first")
        assert not target.exists()
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_write(str(target), "wb") as stream:
        stream.write(b"second, never published")
        raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert leftovers(tmp_path) == ["deep/file.txt"]


def test_concurrent_writers_never_share_a_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    with atomic_write(str(target), "w") as one, atomic_write(str(target), "w") as two:
        one.write("one")
        two.write("two")
        temporaries = [name for name in os.listdir(tmp_path) if name.startswith(TEMP_PREFIX)]
        assert len(temporaries) == 2
    assert target.read_text() in ("one", "two")
    assert leftovers(tmp_path) == ["file.txt"]


@pytest.mark.s3
def test_atomic_write_on_s3_uploads_nothing_on_failure(s3_bucket: str, s3_client: Any) -> None:
    url = f"s3://aws_default@{s3_bucket}/dir/file.bin"
    with pytest.raises(RuntimeError), atomic_write(url) as stream:
        stream.write(b"x" * 1000)
        raise RuntimeError("boom")
    assert _keys(s3_client, s3_bucket) == []
    with atomic_write(url) as stream:
        stream.write(b"payload")
    assert _keys(s3_client, s3_bucket) == ["dir/file.bin"]
    assert s3_client.get_object(Bucket=s3_bucket, Key="dir/file.bin")["Body"].read() == b"payload"


def _uploads(s3_client: Any, bucket: str) -> list[str]:
    return sorted(
        upload["Key"] for upload in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )


@pytest.fixture
def small_s3_parts(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of S3's smallest size (5 MiB), so that a few MiB start a multipart upload before the end."""
    monkeypatch.setattr(resolve_path(f"s3://aws_default@{s3_bucket}/x").fs, "default_block_size", 5 << 20)


@pytest.mark.s3
@pytest.mark.usefixtures("small_s3_parts")
def test_a_large_s3_write_uploads_to_the_final_key_and_publishes_only_on_commit(
    s3_bucket: str, s3_client: Any
) -> None:
    url = f"s3://aws_default@{s3_bucket}/dir/big.bin"
    block = bytes(range(256)) * 4096  # 1 MiB
    with atomic_write(url) as stream:
        for _ in range(12):
            stream.write(block)
        assert _uploads(s3_client, s3_bucket) == ["dir/big.bin"]  # parts went up while writing
        assert _keys(s3_client, s3_bucket) == []  # no object yet, and no temporary object at all
    assert _keys(s3_client, s3_bucket) == ["dir/big.bin"]
    assert _uploads(s3_client, s3_bucket) == []
    assert s3_client.get_object(Bucket=s3_bucket, Key="dir/big.bin")["Body"].read() == block * 12
    assert not resolve_path(url).fs.transaction.files  # fsspec's deferred-file queue does not grow


@pytest.mark.s3
@pytest.mark.usefixtures("small_s3_parts")
def test_a_failed_large_s3_write_aborts_its_upload_and_keeps_the_previous_object(
    s3_bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="dir/big.bin", Body=b"previous export")
    with (
        pytest.raises(RuntimeError, match="boom"),
        atomic_write(f"s3://aws_default@{s3_bucket}/dir/big.bin", "w") as stream,
    ):
        stream.write("x" * (12 << 20))
        assert _uploads(s3_client, s3_bucket) == ["dir/big.bin"]
        raise RuntimeError("boom")
    assert _uploads(s3_client, s3_bucket) == []
    assert _keys(s3_client, s3_bucket) == ["dir/big.bin"]
    assert s3_client.get_object(Bucket=s3_bucket, Key="dir/big.bin")["Body"].read() == b"previous export"


@pytest.mark.s3
def test_an_empty_s3_write_publishes_an_empty_object(s3_bucket: str, s3_client: Any) -> None:
    with atomic_write(f"s3://aws_default@{s3_bucket}/empty.jsonl"):
        pass
    assert s3_client.get_object(Bucket=s3_bucket, Key="empty.jsonl")["Body"].read() == b""
    assert _uploads(s3_client, s3_bucket) == []


def test_resolve_path_makes_local_paths_absolute(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert str(resolve_path("out/u.jsonl")) == f"file://{tmp_path}/out/u.jsonl"
    assert str(resolve_path(tmp_path / "x")) == f"file://{tmp_path}/x"


# --- exports that fail midway -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [(Fault("status", status=401), KumulosAuthError), (Fault("status", status=503), KumulosServerError)],
    ids=["401", "503-exhausted"],
)
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_failure_on_page_3_leaves_the_previous_file_untouched(
    kumulos_connection: KumulosEmulator, tmp_path: Path, fault: Fault, error: type[Exception], fmt: str
) -> None:
    path = tmp_path / f"users.{fmt}"
    path.write_bytes(b"previous export")
    faults = [fault] * 3 if fault.status == 503 else [fault]  # 503 is retried twice, then gives up
    kumulos_connection.script_faults(faults, page=3)
    with pytest.raises(error):
        run_export(output_path=str(path), format=fmt, page_size=10)
    assert path.read_bytes() == b"previous export"
    assert leftovers(tmp_path) == [f"users.{fmt}"]


@pytest.mark.s3
@pytest.mark.parametrize("compression", [None, "gzip"])
def test_failure_leaves_nothing_on_s3(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any, compression: str | None
) -> None:
    _fail_page_3(kumulos_connection, Fault("status", status=401))
    url = f"s3://aws_default@{s3_bucket}/exports/users.jsonl"
    with pytest.raises(KumulosAuthError):
        run_export(output_path=url, page_size=10, compression=compression)
    assert _keys(s3_client, s3_bucket) == []


@pytest.mark.s3
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_successful_export_to_s3(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any, fmt: str
) -> None:
    url = f"s3://aws_default@{s3_bucket}/exports/users.{fmt}"
    summary = run_export(output_path=url, page_size=10, format=fmt)
    assert _keys(s3_client, s3_bucket) == [f"exports/users.{fmt}"]
    body = s3_client.get_object(Bucket=s3_bucket, Key=f"exports/users.{fmt}")["Body"].read()
    assert_export_matches(body, kumulos_connection.users(), fmt)
    assert summary["bytes"] == len(body)
    assert summary["path"] == url


def test_failed_partitioned_export_without_state_store_leaves_no_parts(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "parts"
    run_export(output_path=str(out), split_every=10, page_size=10)
    assert "_manifest.json" in leftovers(out)
    _fail_page_3(kumulos_connection, Fault("status", status=401))
    with pytest.raises(KumulosAuthError):
        run_export(output_path=str(out), split_every=10, page_size=10)
    assert leftovers(out) == []  # the old manifest went first, this run's parts were removed


@pytest.mark.s3
def test_failed_partitioned_export_on_s3_leaves_no_manifest(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    _fail_page_3(kumulos_connection, Fault("status", status=401))
    with pytest.raises(KumulosAuthError):
        run_export(output_path=f"s3://aws_default@{s3_bucket}/parts", split_every=5, page_size=10)
    assert _keys(s3_client, s3_bucket) == []


def _tree(directory: Path) -> list[str]:
    """Every folder and file under ``directory``, folders marked with a trailing slash."""
    return sorted(
        f"{path.relative_to(directory)}{'/' if path.is_dir() else ''}" for path in directory.rglob("*")
    )


@pytest.mark.parametrize("split_every", [None, 5])
def test_a_failed_export_leaves_no_folder_it_created(
    kumulos_connection: KumulosEmulator, tmp_path: Path, split_every: int | None
) -> None:
    (tmp_path / "exports").mkdir()
    partition = tmp_path / "exports" / "users" / "ds=2026-01-01"
    output = partition if split_every else partition / "users.jsonl"
    _fail_page_3(kumulos_connection, Fault("status", status=401))
    with pytest.raises(KumulosAuthError):
        run_export(output_path=str(output), page_size=10, split_every=split_every)
    assert _tree(tmp_path) == ["exports/"]  # the folder that was there stays; nothing else is left


def test_a_failed_export_keeps_a_folder_that_holds_anything(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    partition = tmp_path / "ds=2026-01-01"
    partition.mkdir()
    _fail_page_3(kumulos_connection, Fault("status", status=401))
    with pytest.raises(KumulosAuthError):
        run_export(output_path=str(partition / "users.jsonl"), page_size=10)
    assert _tree(tmp_path) == ["ds=2026-01-01/"]
    (partition / "other.csv").write_text("another writer's file")
    with pytest.raises(KumulosAuthError):
        _fail_page_3(kumulos_connection, Fault("status", status=401))
        run_export(output_path=str(partition / "more" / "users.jsonl"), page_size=10)
    assert _tree(tmp_path) == ["ds=2026-01-01/", "ds=2026-01-01/other.csv"]


def test_atomic_write_removes_only_the_folders_it_created_on_failure(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="writer failed"),
        atomic_write(tmp_path / "a" / "b" / "f.bin") as out,
    ):
        out.write(b"partial")
        raise ValueError("writer failed")
    assert _tree(tmp_path) == []
    with atomic_write(tmp_path / "a" / "b" / "f.bin") as out:
        out.write(b"whole")
    assert _tree(tmp_path) == ["a/", "a/b/", "a/b/f.bin"]


@pytest.mark.s3
@pytest.mark.parametrize("split_every", [None, 5])
def test_a_failed_export_to_s3_adds_no_object_under_an_existing_prefix(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any, split_every: int | None
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="exports/README.txt", Body=b"kept")
    partition = f"s3://aws_default@{s3_bucket}/exports/ds=2026-01-01"
    _fail_page_3(kumulos_connection, Fault("status", status=401))
    with pytest.raises(KumulosAuthError):
        run_export(
            output_path=partition if split_every else f"{partition}/users.jsonl",
            page_size=10,
            split_every=split_every,
        )
    assert _keys(s3_client, s3_bucket) == ["exports/README.txt"]


def test_killed_export_leaves_nothing_at_the_final_path(tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up: the final path must still never see a partial file."""
    path = tmp_path / "users.jsonl"
    script = f"""
import os
from airflow_provider_kumulos.testing.emulator import KumulosEmulator
from airflow_provider_kumulos.operators.export import ExportUsersOperator
with KumulosEmulator(users=400, latency=0.05) as emulator:
    os.environ["AIRFLOW_CONN_KUMULOS_DEFAULT"] = emulator.connection_uri()
    print("ready", flush=True)
    ExportUsersOperator(task_id="export", output_path={str(path)!r}, page_size=5).execute({{}})
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while not any(name.startswith(TEMP_PREFIX) for name in os.listdir(tmp_path)):
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not path.exists()
    assert all(name.startswith(TEMP_PREFIX) for name in os.listdir(tmp_path))


# --- leftovers of killed runs -------------------------------------------------------------------


def _temporary(folder: Path, name: str, age_seconds: float) -> Path:
    path = folder / f"{TEMP_PREFIX}{name}"
    path.write_bytes(b"half an export")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))
    return path


def test_an_export_sweeps_its_own_stale_temporaries_only(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = _temporary(tmp_path, "0a1b-users.jsonl", age_seconds=2 * 3600)
    live = _temporary(tmp_path, "2c3d-users.jsonl", age_seconds=60)  # a concurrent writer's
    other = _temporary(tmp_path, "4e5f-other.jsonl", age_seconds=2 * 3600)  # another export's
    run_export(output_path=str(tmp_path / "users.jsonl"), page_size=10)
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert "Removed 1 temporary file(s)" in capsys.readouterr().out


def test_a_parted_export_sweeps_stale_temporaries_in_its_folder(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    stale = [_temporary(folder, f"{n}-part-0000{n}.jsonl", age_seconds=7200) for n in range(2)]
    live = _temporary(folder, "9-part-00009.jsonl", age_seconds=5)
    run_export(output_path=str(folder), page_size=10, split_every=20)
    assert not any(path.exists() for path in stale)
    assert live.exists()
    assert_export_matches(
        b"".join((folder / f"part-0000{n}.jsonl").read_bytes() for n in range(3)),
        kumulos_connection.users(),
        "jsonl",
    )


def _start_upload(s3_client: Any, bucket: str, key: str) -> str:
    """An incomplete multipart upload at ``key`` with one part, as a killed writer leaves it."""
    upload_id: str = s3_client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"half an export")
    return upload_id


@pytest.mark.s3
def test_an_s3_export_aborts_the_unfinished_uploads_at_its_own_key_only(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    own = [_start_upload(s3_client, s3_bucket, "exports/users.jsonl") for _ in range(2)]
    foreign = {
        key: _start_upload(s3_client, s3_bucket, key)
        for key in (
            "exports/users.jsonl.bak",
            "exports/old/users.jsonl",
            "other/users.jsonl",
            "exports/users",
        )
    }
    run_export(output_path=f"s3://aws_default@{s3_bucket}/exports/users.jsonl", page_size=10)
    left = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert {upload["Key"]: upload["UploadId"] for upload in left} == foreign
    assert not set(own) & {upload["UploadId"] for upload in left}
    assert "Removed 2 temporary file(s) or unfinished upload(s)" in capsys.readouterr().out
    assert _keys(s3_client, s3_bucket) == ["exports/users.jsonl"]


@pytest.mark.s3
def test_a_parted_s3_export_aborts_unfinished_uploads_of_its_parts_and_manifest_only(
    kumulos_connection: KumulosEmulator, s3_bucket: str, s3_client: Any
) -> None:
    for key in ("parts/part-00001.jsonl", "parts/_manifest.json"):
        _start_upload(s3_client, s3_bucket, key)
    foreign = ["parts/notes.jsonl", "parts/part-00001.csv", "parts/part-1.jsonl", "parts/x/part-00001.jsonl"]
    for key in foreign:
        _start_upload(s3_client, s3_bucket, key)
    run_export(output_path=f"s3://aws_default@{s3_bucket}/parts", page_size=10, split_every=50)
    assert _uploads(s3_client, s3_bucket) == sorted(foreign)


@pytest.mark.s3
@pytest.mark.parametrize("split_every", [None, 5])
def test_a_missing_bucket_fails_before_the_first_page_and_says_so(
    kumulos_connection: KumulosEmulator, s3_bucket: str, split_every: int | None
) -> None:
    missing = f"{s3_bucket}-missing"
    with pytest.raises(KumulosInputError) as caught:
        run_export(
            output_path=f"s3://aws_default@{missing}/exports/users.jsonl",
            page_size=10,
            split_every=split_every,
        )
    assert caught.value.parameter == "output_path"
    assert f"the bucket {missing!r} does not exist" in str(caught.value)
    assert [r for r in kumulos_connection.requests if r.path == "/v2/users"] == []


def test_an_unwritable_local_folder_fails_before_the_first_page(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the export's folder should be")
    with pytest.raises(KumulosInputError) as caught:
        run_export(output_path=str(blocker / "users.jsonl"), page_size=10)
    assert caught.value.parameter == "output_path" and "cannot be written" in str(caught.value)
    assert kumulos_connection.requests == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["not-a-folder"]


NOT_WRITABLE_FIX = "Write to a folder this task's user may write to, or give it write access to this one."


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, a folder nobody may write")
@pytest.mark.parametrize(
    ("output", "split_every", "problem"),
    [
        ("/proc/users.csv.gz", None, "the folder /proc is not writable"),
        (
            "/proc/ds=1/users.csv.gz",
            None,
            "the folder /proc/ds=1 cannot be created: the folder /proc is not writable",
        ),
        ("/proc/users", 5, "the folder /proc/users cannot be created: the folder /proc is not writable"),
    ],
)
def test_a_folder_that_cannot_be_written_is_named_with_the_path_given(
    kumulos_connection: KumulosEmulator, output: str, split_every: int | None, problem: str
) -> None:
    with pytest.raises(KumulosInputError) as caught:
        run_export(output_path=output, page_size=10, format="csv", split_every=split_every)
    assert (
        str(caught.value) == f"Invalid output_path: {output} cannot be written: {problem}. {NOT_WRITABLE_FIX}"
    )
    assert kumulos_connection.requests == []


def test_a_file_where_a_folder_should_be_is_named(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    with pytest.raises(KumulosInputError) as caught:
        run_export(output_path=str(blocker / "ds=1" / "users.jsonl"), page_size=10)
    assert str(caught.value) == (
        f"Invalid output_path: {blocker}/ds=1/users.jsonl cannot be written: {blocker} is a file, "
        "not a folder. Fix the path."
    )


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, a folder nobody may write")
def test_atomic_write_names_the_path_given_when_its_folder_is_not_writable() -> None:
    with pytest.raises(OSError) as caught, atomic_write("/proc/failed.jsonl"):
        pass
    message = str(caught.value)
    assert "/proc/failed.jsonl cannot be written: the folder /proc is not writable" in message
    assert TEMP_PREFIX not in message


def test_a_failed_cleanup_never_replaces_the_error_that_caused_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from fsspec.implementations.local import LocalFileSystem

    def refuse(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError("cleanup refused")

    monkeypatch.setattr(LocalFileSystem, "rm", refuse)
    with (
        pytest.raises(ValueError, match="the writer's own error") as caught,
        atomic_write(str(tmp_path / "file.bin")) as stream,
    ):
        stream.write(b"partial")
        raise ValueError("the writer's own error")
    assert caught.value.__context__ is None
    assert "Could not remove the temporary" in caplog.text and "cleanup refused" in caplog.text


def test_a_local_summary_path_is_the_local_path_given(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    import gzip
    import json

    summary = run_export(output_path=str(tmp_path / "users.jsonl.gz"), compression="gzip", page_size=10)
    assert summary["path"] == str(tmp_path / "users.jsonl.gz")
    with gzip.open(summary["path"]) as stream:
        assert [json.loads(line)["identifier"] for line in stream] == kumulos_connection.user_ids()


def test_a_file_url_summary_path_stays_a_url(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    summary = run_export(output_path=f"file://{tmp_path}/parts", split_every=20, page_size=10)
    assert summary["path"] == f"file://{tmp_path}/parts"
    assert summary["manifest"] == f"file://{tmp_path}/parts/_manifest.json"
