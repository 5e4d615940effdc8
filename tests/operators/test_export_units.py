"""Pieces of the export on their own: the dedupe table (like a set, compact), selection, page batches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_kumulos._dedupe import SeenIdentifiers
from airflow_provider_kumulos._export.options import parse_timestamp
from airflow_provider_kumulos._export.select import PageBatch, Selector, UpdatedSinceFilter


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


def test_the_operator_follows_the_one_list_of_export_options() -> None:
    import inspect

    from airflow_provider_kumulos._export.options import EXPORT_OPTIONS, ExportOptions, build_options
    from airflow_provider_kumulos.operators.export import ExportUsersOperator

    parameters = inspect.signature(ExportUsersOperator.__init__).parameters
    operator_only = {"self", "kumulos_conn_id", "hook_params", "progress_interval", "kwargs"}
    assert set(parameters) - operator_only == {option.name for option in EXPORT_OPTIONS}
    for option in EXPORT_OPTIONS:
        assert parameters[option.name].default == option.default, option.name
        assert f":param {option.name}:" in (ExportUsersOperator.__doc__ or ""), option.name
    templated = tuple(option.name for option in EXPORT_OPTIONS if option.templated)
    assert tuple(ExportUsersOperator.template_fields) == ("kumulos_conn_id", *templated)
    assert parameters["progress_interval"].default == 10.0
    defaults = build_options(output_path="/tmp/users.jsonl")
    assert defaults == ExportOptions(output_path=defaults.output_path)


def test_the_fingerprint_covers_exactly_the_options_marked_for_it() -> None:
    from airflow_provider_kumulos._export.options import EXPORT_OPTIONS, build_options

    base = {"output_path": "/tmp/users.csv", "format": "csv", "split_every": 10}
    changed = {
        "output_path": "/tmp/other.csv",
        "format": "jsonl",
        "compression": "gzip",
        "page_size": 10,
        "max_xcom_users": 5,
        "include_installs": False,
        "fields": ["attributes"],
        "updated_since": "2024-01-01T00:00:00Z",
        "updated_since_field": "createdAt",
        "on_count_mismatch": "fail",
        "split_every": 11,
        "start_page": 2,
        "end_page": 9,
        "attribute_columns": ["a"],
        "max_concurrency": 3,
    }
    assert set(changed) == {option.name for option in EXPORT_OPTIONS}
    reference = build_options(base).fingerprint()
    for option in EXPORT_OPTIONS:
        other = {**base, option.name: changed[option.name]}
        if option.name == "attribute_columns":
            other["format"] = "csv"
        differs = build_options(other).fingerprint() != reference
        assert differs is option.fingerprint, option.name
    described = build_options(base).describe()
    assert described["fields"][0] == "identifier" and "output_path" not in described
