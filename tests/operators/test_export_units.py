"""Pieces of the export on their own: the dedupe table (like a set, compact), selection, page batches."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_kumulos._export.dedupe import SeenIdentifiers
from airflow_provider_kumulos._export.filtering import UpdatedSinceFilter
from airflow_provider_kumulos._export.options import parse_timestamp
from airflow_provider_kumulos._export.records import PageBatch
from airflow_provider_kumulos._export.selection import Selector


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=6), max_size=3000))
def test_matches_a_python_set(identifiers: list[str]) -> None:
    seen, reference = SeenIdentifiers(), set()
    for identifier in identifiers:
        assert seen.add(identifier) is (identifier not in reference)
        reference.add(identifier)
    assert len(seen) == len(reference)


def test_growth_keeps_every_identifier_and_stays_compact() -> None:
    seen = SeenIdentifiers()
    identifiers = [f"user-{i}" for i in range(100_000)]
    positions, duplicates, consumed = seen.add_many(identifiers, range(len(identifiers)), None)
    assert (len(positions), duplicates, consumed) == (100_000, 0, 100_000)
    assert seen.add_many(identifiers, range(0, 100_000, 7), None)[:2] == ([], len(range(0, 100_000, 7)))
    assert 8 * 100_000 / 0.7 <= seen.nbytes <= 2 * 8 * 100_000 / 0.7


def test_limit_stops_after_that_many_new_identifiers() -> None:
    seen = SeenIdentifiers()
    seen.add("b")
    positions, duplicates, consumed = seen.add_many(["a", "b", "c", "d", "e"], [0, 1, 2, 3, 4], 2)
    assert (positions, duplicates, consumed) == ([0, 2], 1, 3)


def test_selection_counts_filtered_and_duplicates_up_to_where_it_stopped() -> None:
    stamps = [
        "2024-01-02T00:00:00Z",
        None,
        "2023-12-31T23:59:59+00:00",
        "2024-01-01T01:00:00+01:00",
        "x",
        "2024-02-01T00:00:00Z",
    ]
    batch = PageBatch(page=1, users=list(range(6)), identifiers=["a", "b", "c", "a", "e", "f"], stamps=stamps)
    selector = Selector(
        SeenIdentifiers(), UpdatedSinceFilter(parse_timestamp("2024-01-01T00:00:00Z"), "updatedAt")
    )
    first = selector.select(batch, 0, limit=1)
    assert (first.positions, first.stop, first.filtered, first.duplicates) == ([0], 3, 2, 0)
    rest = selector.select(batch, first.stop, limit=None)
    assert (rest.positions, rest.stop, rest.filtered, rest.duplicates) == ([5], 6, 1, 1)


def test_reserve_sizes_the_table_once() -> None:
    seen = SeenIdentifiers()
    seen.reserve(100_000)
    size = seen.nbytes
    assert size == 8 * (1 << 18)  # the smallest power of two holding 100,000 at 70% load
    seen.add_many([f"u{i}" for i in range(100_000)], range(100_000), None)
    assert seen.nbytes == size
    seen.reserve(10)
    assert seen.nbytes == size


def test_pretty_printed_users_are_made_single_line_with_the_same_content() -> None:
    import json

    import msgspec

    from airflow_provider_kumulos._export.jsonl import encode_lines
    from airflow_provider_kumulos._export.records import batch_from_raw

    body = b'[{"identifier": "a",\n  "attributes": {"note": "two\\nlines"}},\n {"identifier": "b"}]'
    users = msgspec.json.decode(body, type=list[msgspec.Raw])
    batch = batch_from_raw(1, users, None)
    assert batch.identifiers == ["a", "b"]
    lines = encode_lines(batch.users).splitlines()
    assert [json.loads(line) for line in lines] == json.loads(body)
    assert len(lines) == 2


def test_a_user_without_identifier_is_a_response_error() -> None:
    import msgspec
    import pytest

    from airflow_provider_kumulos._export.records import batch_from_dicts, batch_from_raw
    from airflow_provider_kumulos.exceptions import KumulosResponseError

    with pytest.raises(KumulosResponseError, match="page 7"):
        batch_from_raw(7, msgspec.json.decode(b'[{"name": "x"}]', type=list[msgspec.Raw]), None)
    with pytest.raises(KumulosResponseError, match="no string identifier"):
        batch_from_dicts(7, [{"identifier": 3}], None)


def test_prefetcher_yields_in_order_then_raises_the_source_error() -> None:
    import pytest

    from airflow_provider_kumulos._export.prefetch import Prefetcher

    def source() -> Iterator[int]:
        yield from range(5)
        raise ValueError("page 6 failed")

    got: list[int] = []
    with pytest.raises(ValueError, match="page 6 failed"), Prefetcher(source(), depth=2) as items:
        got.extend(items)
    assert got == [0, 1, 2, 3, 4]


def test_prefetcher_stops_fetching_when_the_consumer_gives_up() -> None:
    import pytest

    from airflow_provider_kumulos._export.prefetch import Prefetcher

    fetched: list[int] = []

    def source() -> Iterator[int]:
        for item in range(1000):
            fetched.append(item)
            yield item

    prefetcher = Prefetcher(source(), depth=2)
    with pytest.raises(RuntimeError), prefetcher as items:
        next(items)
        raise RuntimeError("disk full")
    prefetcher._thread.join(timeout=5)
    assert not prefetcher._thread.is_alive()
    assert len(fetched) <= 4  # the item in hand, two queued, one waiting to be queued


class _FailingTarget(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError("No space left on device")


def test_writer_thread_reports_a_storage_failure() -> None:
    import pytest

    from airflow_provider_kumulos._export.sink import _WriterThread

    writer = _WriterThread(_FailingTarget())  # type: ignore[arg-type]
    writer.write(b"first chunk")
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):
            writer.write(b"more")
        writer.close()


def test_writer_thread_stores_everything_in_order_before_close_returns() -> None:
    from airflow_provider_kumulos._export.sink import _WriterThread

    target = io.BytesIO()
    writer = _WriterThread(target, depth=1)
    for index in range(200):
        writer.write(memoryview(f"{index},".encode()))
    writer.close()
    assert target.getvalue() == b"".join(f"{index},".encode() for index in range(200))
    assert writer.tell() == len(target.getvalue())
