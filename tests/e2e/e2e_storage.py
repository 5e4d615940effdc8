"""Read back what the DAGs wrote, by URL, without Airflow: ``s3://[conn@]bucket/key`` on moto or a local file."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ObjectReader:
    """Fetch whole objects from moto's S3 endpoint or the local file system."""

    def __init__(self, s3_endpoint: str) -> None:
        import boto3

        self.s3: Any = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def read(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme == "s3":
            bucket = parts.netloc.rpartition("@")[2]
            body = self.s3.get_object(Bucket=bucket, Key=parts.path.lstrip("/"))["Body"].read()
            return bytes(body).decode("utf-8")
        if parts.scheme in ("", "file"):
            return Path(parts.path).read_text(encoding="utf-8")
        raise ValueError(f"cannot read {url!r}: only s3:// and file:// URLs are supported")
