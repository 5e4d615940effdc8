"""Parquet (optional extra ``parquet``): typed columns, written in row groups so memory stays bounded.

Schema (columns follow ``fields``/``include_installs``): ``identifier`` string (required);
``firstActive``, ``lastActive``, ``createdAt``, ``updatedAt`` timestamp[us, UTC] (null when absent
or not ISO-8601); ``inAppEnabled`` bool; ``attributes`` and ``installs`` strings holding compact
JSON, because attribute keys and value types differ from user to user. Users are buffered as
Arrow arrays and flushed as one row group once :data:`ROW_GROUP_USERS` users are buffered. pyarrow is imported
only when a parquet export runs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import IO, Any

from airflow_provider_kumulos._export.csv_format import cell
from airflow_provider_kumulos._export.options import parse_timestamp

ROW_GROUP_USERS = 10_000
TIMESTAMP_FIELDS = ("firstActive", "lastActive", "createdAt", "updatedAt")
JSON_FIELDS = ("attributes", "installs")


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


@functools.cache
def _types() -> dict[str, Any]:
    import pyarrow as pa

    types = {name: pa.timestamp("us", tz="UTC") for name in TIMESTAMP_FIELDS}
    types.update(
        identifier=pa.string(), inAppEnabled=pa.bool_(), attributes=pa.string(), installs=pa.string()
    )
    return types


def schema(kept_fields: Sequence[str]) -> Any:
    """The Arrow schema for these user keys (``identifier`` required)."""
    import pyarrow as pa

    types = _types()
    return pa.schema([pa.field(name, types[name], nullable=name != "identifier") for name in kept_fields])


def _column(name: str, users: Sequence[dict[str, Any]]) -> list[Any]:
    if name in TIMESTAMP_FIELDS:
        return [_timestamp(user.get(name)) for user in users]
    if name in JSON_FIELDS:
        return [None if user.get(name) is None else cell(user.get(name)) for user in users]
    if name == "inAppEnabled":
        return [value if isinstance(value := user.get(name), bool) else None for user in users]
    return [user.get(name) for user in users]


class ParquetWriter:
    """Buffers users as Arrow record batches and writes a row group every ``ROW_GROUP_USERS`` users."""

    def __init__(self, stream: IO[bytes], kept_fields: Sequence[str]) -> None:
        import pyarrow.parquet as pq

        self._schema = schema(kept_fields)
        self._writer = pq.ParquetWriter(stream, self._schema, compression="snappy")
        self._pending: list[Any] = []
        self._pending_rows = 0

    def write(self, users: Sequence[dict[str, Any]]) -> None:
        """Convert users to an Arrow batch; flush a row group when enough are buffered."""
        import pyarrow as pa

        if not users:
            return
        arrays = [pa.array(_column(field.name, users), type=field.type) for field in self._schema]
        self._pending.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._pending_rows += len(users)
        if self._pending_rows >= ROW_GROUP_USERS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            table = pa.Table.from_batches(self._pending)
            self._writer.write_table(table, row_group_size=table.num_rows)
            self._pending, self._pending_rows = [], 0
            # Arrow's allocator keeps freed row-group buffers; without this the resident size
            # crept up by ~30 MB over 200,000 users (1.13x the size of 20,000 users, now 1.08x).
            pa.default_memory_pool().release_unused()

    def close(self) -> None:
        """Write the last row group and the footer."""
        self._flush()
        self._writer.close()


def read_identifiers(stream: IO[bytes]) -> Iterator[str]:
    """Identifiers of a parquet export, in file order (reads only that column)."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(stream).iter_batches(columns=["identifier"]):
        yield from batch.column(0).to_pylist()
