"""Record sources: what each reader yields, how CSV cells are typed, and the input errors it raises."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_kumulos._bulk.records import SourceRecord
from airflow_provider_kumulos._bulk.sources import (
    check_attribute_types,
    from_identifiers,
    from_records,
    open_source,
)
from airflow_provider_kumulos.exceptions import KumulosInputError

SET_FORMATS = ("jsonl", "csv")
DELETE_FORMATS = ("jsonl", "csv", "txt")


def read(path: Any, **kwargs: Any) -> list[SourceRecord]:
    options: dict[str, Any] = {
        "source_format": None,
        "allowed_formats": SET_FORMATS,
        "identifier_column": "identifier",
        "with_attributes": True,
    }
    options.update(kwargs)
    with open_source(path, **options) as records:
        return list(records)


def good(records: list[SourceRecord]) -> list[tuple[object, object]]:
    assert [r.problem for r in records if r.problem] == []
    return [(r.identifier, r.attributes) for r in records]


# --- in-memory ------------------------------------------------------------------------------------


def test_records_yield_identifier_and_attributes_ignoring_extra_keys() -> None:
    records = list(
        from_records(
            [
                {"identifier": "a", "attributes": {"x": 1}, "error": {"status": 422}},
                {"id": "b", "attributes": {}},
            ],
            parameter="records",
            identifier_key="id",
            with_attributes=True,
        )
    )
    assert records[0].problem is not None and "no 'id'" in str(records[0].problem)
    assert (records[1].where, records[1].identifier, records[1].attributes, records[1].problem) == (
        "records[1]",
        "b",
        {},
        None,
    )


def test_records_that_are_not_objects_or_lack_attributes_are_problems_not_crashes() -> None:
    records = list(
        from_records(
            ["a", {"identifier": "b"}], parameter="records", identifier_key="identifier", with_attributes=True
        )
    )
    assert [r.where for r in records] == ["records[0]", "records[1]"]
    assert isinstance(records[0].problem, KumulosInputError)
    assert "expected an object, got str" in str(records[0].problem)
    assert records[1].identifier == "b"
    assert "no 'attributes' key" in str(records[1].problem)


def test_identifiers_are_passed_through_for_later_validation() -> None:
    assert [(r.where, r.identifier) for r in from_identifiers(["a", 3], parameter="user_ids")] == [
        ("user_ids[0]", "a"),
        ("user_ids[1]", 3),
    ]


# --- JSONL ------------------------------------------------------------------------------------------


def test_jsonl_reads_each_line_skipping_blank_ones_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    lines = [
        json.dumps({"identifier": "a", "attributes": {"n": 1, "tags": ["x"]}}),
        "",
        json.dumps({"identifier": "b", "attributes": {"n": None}, "error": {"type": "X"}}),
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    records = read(path)
    assert good(records) == [("a", {"n": 1, "tags": ["x"]}), ("b", {"n": None})]
    assert [r.where for r in records] == ["source_path line 1", "source_path line 3"]


def test_jsonl_bad_lines_become_problems_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('{"identifier": "a", "attributes": {}}\n{not json\n[1, 2]\n{"identifier": "d"}\n')
    records = read(path)
    assert records[0].problem is None
    assert [str(r.problem).split(":")[0] for r in records[1:]] == [
        "Invalid source_path line 2",
        "Invalid source_path line 3",
        "Invalid source_path line 4",
    ]
    assert "not valid JSON" in str(records[1].problem)
    assert "expected a JSON object, got list" in str(records[2].problem)
    assert "no 'attributes' key" in str(records[3].problem)


def test_gzipped_jsonl_is_decompressed_on_the_fly(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"identifier": "a", "attributes": {"k": "v"}}\n'))
    assert good(read(path)) == [("a", {"k": "v"})]


def open_paths() -> set[str]:
    """Paths of the files this process holds open."""
    return {file.path for file in psutil.Process().open_files()}


@pytest.mark.parametrize("name", ["users.csv.gz", "USERS.CSV.GZ"])
def test_gzipped_csv_is_decompressed_and_closed_with_its_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress("\ufeffidentifier,tier\na,gold\nb,\n".encode()))
    with open_source(
        path,
        source_format=None,
        allowed_formats=SET_FORMATS,
        identifier_column="identifier",
        with_attributes=True,
    ) as records:
        assert str(path) in open_paths()
        assert good(list(records)) == [("a", {"tier": "gold"}), ("b", {})]
    assert str(path) not in open_paths()


def test_truncated_gzip_raises_a_clear_input_error(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(b'{"identifier": "u%d", "attributes": {}}\n' % i for i in range(2000)))
    path = tmp_path / "users.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        KumulosInputError, match=r"^Invalid source_path: it cannot be read after source_path line \d+"
    ):
        read(path)


def test_jsonl_for_deletes_reads_only_the_identifier(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text('{"user": "a"}\n{"user": "b", "attributes": "ignored"}\n')
    records = read(path, allowed_formats=DELETE_FORMATS, identifier_column="user", with_attributes=False)
    assert good(records) == [("a", None), ("b", None)]


# --- text -------------------------------------------------------------------------------------------


def test_text_source_yields_one_identifier_per_non_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"a\r\n\n  \nb c\n")
    records = read(path, allowed_formats=DELETE_FORMATS, with_attributes=False)
    assert [(r.where, r.identifier) for r in records] == [
        ("source_path line 1", "a"),
        ("source_path line 4", "b c"),
    ]


# --- CSV --------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_csv_types_columns_and_omits_empty_cells(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "users.csv",
        [
            ["identifier", "name", "age", "score", "vip", "meta"],
            ["a", "Ann", "42", "4.5", "yes", '{"k": [1, null]}'],
            ["b", "", "-7", "1e3", "FALSE", "null"],
        ],
    )
    types = {"age": "int", "score": "float", "vip": "bool", "meta": "json"}
    assert good(read(path, attribute_types=types)) == [
        ("a", {"name": "Ann", "age": 42, "score": 4.5, "vip": True, "meta": {"k": [1, None]}}),
        ("b", {"age": -7, "score": 1000.0, "vip": False, "meta": None}),
    ]


def test_csv_columns_without_a_type_stay_strings(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "users.csv", [["id", "age"], ["a", "42"]])
    assert good(read(path, identifier_column="id")) == [("a", {"age": "42"})]


@pytest.mark.parametrize(
    ("kind", "cell", "reason"),
    [
        ("int", "4.2", "expected a whole number"),
        ("float", "many", "expected a number"),
        ("float", "nan", "NaN and Infinity"),
        ("bool", "maybe", "expected true/false"),
        ("json", "{oops", "expected JSON text"),
        ("json", "NaN", "NaN cannot be sent as JSON"),
    ],
)
def test_csv_cells_that_do_not_fit_their_type_fail_that_row_without_quoting_the_value(
    tmp_path: Path, kind: str, cell: str, reason: str
) -> None:
    path = write_csv(
        tmp_path / "users.csv", [["identifier", "x", "y"], ["a", cell, "kept"], ["b", "", "fine"]]
    )
    records = read(path, attribute_types={"x": kind})
    problem = records[0].problem
    assert isinstance(problem, KumulosInputError)
    assert str(problem).startswith(
        f"Invalid source_path line 2 column 'x': the value is not a valid {kind}: {reason}"
    )
    assert cell not in str(problem).split(": ", 1)[1].replace(reason, "")
    assert records[0].attributes == {"x": cell, "y": "kept"}  # as read, so the failures file loses nothing
    assert records[1].problem is None and records[1].attributes == {"y": "fine"}


def test_csv_rows_with_the_wrong_number_of_fields_are_problems(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text("identifier,a\nx,1,2\ny,3\n")
    records = read(path)
    assert "it has 3 fields, the header has 2" in str(records[0].problem)
    assert records[0].identifier == "x"
    assert records[1].problem is None


def test_csv_for_deletes_ignores_other_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ids.csv", [["name", "identifier"], ["Ann", "a"]])
    assert good(read(path, allowed_formats=DELETE_FORMATS, with_attributes=False)) == [("a", None)]


@pytest.mark.parametrize(
    ("content", "kwargs", "parameter", "problem"),
    [
        ("", {}, "source_path", "the CSV file is empty"),
        ("user,a\nx,1\n", {}, "identifier_column", "column 'identifier' is not in the CSV header"),
        ("identifier,a,a\n", {}, "source_path", "repeats column(s) ['a']"),
        ("identifier,a\n", {"attribute_types": {"b": "int"}}, "attribute_types", "column(s) ['b'] are not"),
        ("identifier,a\n", {"attribute_types": {"identifier": "int"}}, "attribute_types", "['identifier']"),
    ],
)
def test_csv_header_problems_are_raised_before_any_row_is_read(
    tmp_path: Path, content: str, kwargs: dict[str, Any], parameter: str, problem: str
) -> None:
    path = tmp_path / "users.csv"
    path.write_text(content)
    with (
        pytest.raises(KumulosInputError) as caught,
        open_source(
            path,
            source_format=None,
            allowed_formats=SET_FORMATS,
            identifier_column="identifier",
            with_attributes=True,
            **kwargs,
        ),
    ):
        pytest.fail("the header must be checked on open")
    assert caught.value.parameter == parameter
    assert problem in str(caught.value)


def test_csv_that_is_not_utf8_raises_a_clear_input_error(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"identifier,name\na,caf\xe9\n")
    with pytest.raises(KumulosInputError, match=r"cannot be read after the start .*UTF-8"):
        read(path)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1).filter(lambda s: s.strip() and "\x00" not in s),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.text().filter(lambda s: s and "\x00" not in s),
        ),
        max_size=5,
    )
)
def test_csv_typing_round_trips_what_a_csv_writer_wrote(
    rows: list[tuple[str, int, float, bool, str]],
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["identifier", "i", "f", "b", "s"])
    writer.writerows([(ident, i, repr(f), str(b).lower(), s) for ident, i, f, b, s in rows])
    from airflow_provider_kumulos._bulk.sources import _csv_records

    buffer.seek(0)
    records = list(
        _csv_records(
            buffer, "line", "identifier", {"i": "int", "f": "float", "b": "bool"}, with_attributes=True
        )
    )
    assert good(records) == [(ident, {"i": i, "f": f, "b": b, "s": s}) for ident, i, f, b, s in rows]


def test_unknown_attribute_types_are_named() -> None:
    with pytest.raises(
        KumulosInputError, match=r"column 'age' has the unknown type 'integer'\. Use one of str, int"
    ):
        check_attribute_types({"age": "integer"})
    with pytest.raises(KumulosInputError, match="expected a mapping"):
        check_attribute_types(["int"])


# --- formats, paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "source_format", "allowed", "problem"),
    [
        ("users.json", None, SET_FORMATS, "cannot be told from its name. Name the file .jsonl, .csv"),
        ("users", None, SET_FORMATS, "cannot be told from its name"),
        ("users.gz", None, SET_FORMATS, "cannot be told from its name"),
        ("ids.txt", None, SET_FORMATS, "cannot be told from its name"),
    ],
)
def test_formats_that_cannot_be_read_are_refused_up_front(
    tmp_path: Path, name: str, source_format: str | None, allowed: tuple[str, ...], problem: str
) -> None:
    path = tmp_path / name
    path.write_text("")
    with pytest.raises(KumulosInputError, match=problem.replace(".", r"\.").replace("(", r"\(")) as caught:
        read(path, source_format=source_format, allowed_formats=allowed)
    assert caught.value.parameter == "source_format"


def test_an_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "export.data"
    path.write_text('{"identifier": "a", "attributes": {}}\n')
    assert good(read(path, source_format="jsonl")) == [("a", {})]


def test_attribute_types_on_a_jsonl_source_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text("")
    with pytest.raises(KumulosInputError, match="only applies to CSV sources") as caught:
        read(path, attribute_types={"a": "int"})
    assert caught.value.parameter == "attribute_types"


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(KumulosInputError, match="does not exist or is not a file") as caught:
        read(tmp_path / "absent.jsonl")
    assert caught.value.parameter == "source_path"


@pytest.mark.s3
def test_sources_stream_from_s3(s3_bucket: str, s3_client: Any) -> None:
    body = "identifier,n\n" + "".join(f"u{i},{i}\n" for i in range(300))
    s3_client.put_object(Bucket=s3_bucket, Key="in/users.csv.gz", Body=gzip.compress(body.encode()))
    records = read(f"s3://aws_default@{s3_bucket}/in/users.csv.gz", attribute_types={"n": "int"})
    assert good(records) == [(f"u{i}", {"n": i}) for i in range(300)]
