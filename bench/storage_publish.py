"""Publishing a large export to S3: completing its multipart upload against a temporary object moved into place.

Both ways write the same bytes (JSON Lines, 1 MiB at a time) to ``s3://aws_default@<bucket>/...`` on
moto's S3 server, run as its own process on loopback, through the Amazon provider's s3fs:

- ``commit``: :func:`~airflow_provider_kumulos._storage.atomic_write`, which opens the final key
  with ``autocommit=False`` and completes the multipart upload when the block ends;
- ``temporary + mv``: the earlier way, the same upload to a temporary sibling key, then ``fs.mv``
  onto the final key (on S3 a server-side copy of the whole file, then a delete; s3fs copies a
  multipart object part by part, ``UploadPartCopy``, and completes a second upload).

Each run is a fresh child process that times the writes (parts uploaded as the 50 MiB buffer fills)
and the publish (from the end of the ``with`` block's body to the object being in place: the last
part, then the completion, or the completion, copy and delete), and checks that the object holds
every byte and that no temporary object or unfinished upload is left; it also times each S3
request by operation. Runs alternate between the ways so that changes in load hit both alike;
medians are compared. Goal: no copy request, and both the publish and the whole write take less
time than the earlier way's.

    python bench/storage_publish.py                # 1 GiB, 3 runs of each way
    python bench/storage_publish.py --size-mib 256 --repeat 5
    python bench/storage_publish.py --smoke        # 8 MiB, one run of each
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from _common import airflow_env, bench_parser, print_table, run_child

WAYS = ("commit", "temporary + mv")
BUCKET = "kumulos-bench"
KEY = "exports/users.jsonl"
CHUNK_MIB = 1
PUBLISH_GOAL = 1.0
TOTAL_GOAL = 1.0


def chunk() -> bytes:
    """1 MiB of JSON Lines shaped like exported users (the same bytes for every write)."""
    lines = []
    size, index = 0, 0
    while size < CHUNK_MIB << 20:
        line = json.dumps(
            {"identifier": f"user-{index:08d}", "attributes": {"plan": "gold", "score": index % 97}}
        ).encode()
        lines.append(line + b"\n")
        size += len(line) + 1
        index += 1
    return b"".join(lines)[: CHUNK_MIB << 20]


@contextlib.contextmanager
def temporary_then_move(url: str) -> Iterator[IO[bytes]]:
    """The earlier publish on object stores: write a temporary sibling, then ``mv`` it onto ``url``."""
    from airflow_provider_kumulos._storage import resolve_path, temp_sibling

    target = resolve_path(url)
    temp = temp_sibling(target)
    fs = target.fs
    raw = fs.open(temp.path, "wb")
    try:
        yield raw
        raw.close()
        fs.mv(temp.path, target.path)
    except BaseException:
        with contextlib.suppress(Exception):
            raw.close()
        fs.rm(temp.path)
        raise


class RequestTimer:
    """Seconds and count of each S3 operation s3fs makes (parts are uploaded one after another)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}
        self._started = 0.0

    def before(self, **_: Any) -> None:
        """Start timing a request."""
        self._started = time.perf_counter()

    def after(self, model: Any, **_: Any) -> None:
        """Add the request's time to its operation's count and total."""
        entry = self.seconds.setdefault(model.name, [0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - self._started


def child(way: str, size_mib: int) -> None:
    """Write ``size_mib`` MiB one way; print the seconds writing, publishing, and what S3 holds after."""
    from airflow_provider_kumulos._storage import atomic_write, resolve_path

    data = chunk()
    url = f"s3://aws_default@{BUCKET}/{KEY}"
    fs = resolve_path(url).fs
    fs.ls(BUCKET)  # one-time costs (provider discovery, connection, client) untimed
    calls = RequestTimer()
    fs.s3.meta.events.register("before-call.s3", calls.before)
    fs.s3.meta.events.register("after-call.s3", calls.after)
    opener = atomic_write if way == "commit" else temporary_then_move
    began = time.perf_counter()
    with opener(url) as stream:
        for _ in range(size_mib // CHUNK_MIB):
            stream.write(data)
        written = time.perf_counter()
    published = time.perf_counter()
    client = s3_client(os.environ["KUMULOS_BENCH_S3"])
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    stored = client.head_object(Bucket=BUCKET, Key=KEY)["ContentLength"]
    client.delete_object(Bucket=BUCKET, Key=KEY)
    result = {
        "write_s": written - began,
        "publish_s": published - written,
        "total_s": published - began,
        "stored_bytes": stored,
        "other_objects": [key for key in keys if key != KEY],
        "unfinished_uploads": len(uploads),
        "requests": calls.seconds,
    }
    print(json.dumps(result))


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client for moto's server (any credentials do)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """moto's S3 server in its own process on loopback, with the bench bucket; yields its URL."""
    import subprocess

    port = free_port()
    log = (workdir / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.2)
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def child_env(endpoint: str, home: Path) -> dict[str, str]:
    """The environment of a child: a throwaway AIRFLOW_HOME, credentials for moto and ``aws_default`` to it."""
    env = airflow_env(home)
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        KUMULOS_BENCH_S3=endpoint,
        AIRFLOW_CONN_AWS_DEFAULT=json.dumps(
            {
                "conn_type": "aws",
                "login": "bench",
                "password": "bench",
                # moto joins the parts of a 1 GiB upload in Python: longer than botocore's 60 s default
                "extra": {
                    "endpoint_url": endpoint,
                    "region_name": "us-east-1",
                    "config_kwargs": {"read_timeout": 1800},
                },
            }
        ),
    )
    return env


def measure(way: str, size_mib: int, env: dict[str, str]) -> dict[str, Any]:
    """One run of ``way`` in a fresh child; fails loudly if the object is incomplete or leftovers remain."""
    result = run_child([sys.executable, __file__, "--child", way, str(size_mib)], env=env, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{way} failed:\n{result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    if figures["stored_bytes"] != size_mib << 20:
        raise RuntimeError(f"{way} stored {figures['stored_bytes']} bytes, not {size_mib << 20}")
    if figures["other_objects"] or figures["unfinished_uploads"]:
        raise RuntimeError(
            f"{way} left {figures['other_objects']} and {figures['unfinished_uploads']} uploads"
        )
    return figures


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the export (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (default 3)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    size_mib, repeat = (8, 1) if args.smoke else (args.size_mib, args.repeat)
    print(
        f"Publishing {size_mib:,} MiB of JSON Lines to moto's S3 server on loopback, {repeat} run(s) of each way"
    )
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in WAYS}
    with (
        tempfile.TemporaryDirectory(prefix="kumulos-bench-s3-") as workdir,
        moto_server(Path(workdir)) as url,
    ):
        env = child_env(url, Path(workdir) / "airflow")
        for _ in range(repeat):
            for way in WAYS:
                runs[way].append(measure(way, size_mib, env))
    median = {
        way: {
            key: statistics.median(run[key] for run in results) for key in ("write_s", "publish_s", "total_s")
        }
        for way, results in runs.items()
    }
    rows = [
        [
            way,
            f"{median[way]['write_s']:.2f}",
            f"{median[way]['publish_s']:.2f}",
            f"{median[way]['total_s']:.2f}",
            f"{size_mib / median[way]['total_s']:.0f}",
            " ".join(f"{run['total_s']:.1f}" for run in runs[way]),
        ]
        for way in WAYS
    ]
    print_table(["way", "writing s", "publish s", "total s", "MiB/s", "every run's total s"], rows)
    print()
    print("S3 requests of one run (count, median seconds):")
    operations = sorted({name for results in runs.values() for run in results for name in run["requests"]})
    print_table(
        ["operation", *WAYS],
        [
            [
                name,
                *(requests_cell([run["requests"].get(name, [0, 0.0]) for run in runs[way]]) for way in WAYS),
            ]
            for name in operations
        ],
    )
    new, old = median["commit"], median["temporary + mv"]
    publish_ratio = new["publish_s"] / old["publish_s"]
    total_ratio = new["total_s"] / old["total_s"]
    copies = sum(
        run["requests"].get(name, [0])[0]
        for run in runs["commit"]
        for name in ("CopyObject", "UploadPartCopy")
    )
    print(
        f"publish: commit {new['publish_s']:.2f} s vs temporary + mv {old['publish_s']:.2f} s = "
        f"{publish_ratio:.2f}x (goal < {PUBLISH_GOAL}x, no copy: {copies} copy requests): "
        f"{'met' if publish_ratio < PUBLISH_GOAL and not copies else 'MISSED'}"
    )
    print(
        f"whole write: {new['total_s']:.2f} s vs {old['total_s']:.2f} s = {total_ratio:.2f}x "
        f"(goal < {TOTAL_GOAL}x): {'met' if total_ratio < TOTAL_GOAL else 'MISSED'}"
    )


def requests_cell(entries: list[list[float]]) -> str:
    """``count x median seconds`` of one operation over the runs of a way (``-`` when never made)."""
    count = int(statistics.median(entry[0] for entry in entries))
    return f"{count} x {statistics.median(entry[1] for entry in entries):.2f} s" if count else "-"


if __name__ == "__main__":
    main()
