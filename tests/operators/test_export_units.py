"""Pieces of the export on their own: the dedupe table (like a set, compact), selection, page batches."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_kumulos._export.options import parse_timestamp
from airflow_provider_kumulos._export.run import PageBatch, SeenIdentifiers, Selector, UpdatedSinceFilter


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


class _FailingTarget(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError("No space left on device")


def test_writer_thread_reports_a_storage_failure() -> None:
    import pytest

    from airflow_provider_kumulos._export.sinks import _WriterThread

    writer = _WriterThread(_FailingTarget())  # type: ignore[arg-type]
    writer.write(b"first chunk")
    with pytest.raises(OSError, match="No space left"):
        for _ in range(100):
            writer.write(b"more")
        writer.close()


def test_writer_thread_stores_everything_in_order_before_close_returns() -> None:
    from airflow_provider_kumulos._export.sinks import _WriterThread

    target = io.BytesIO()
    writer = _WriterThread(target, depth=1)
    for index in range(200):
        writer.write(memoryview(f"{index},".encode()))
    writer.close()
    assert target.getvalue() == b"".join(f"{index},".encode() for index in range(200))
    assert writer.tell() == len(target.getvalue())
