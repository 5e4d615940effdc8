"""The failures file keeps every failed record as read, so it can be fixed and fed back."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from attributes_support import read_jsonl, run

from airflow_provider_kumulos.exceptions import KumulosError
from airflow_provider_kumulos.operators.kumulos import SetAttributesOperator
from airflow_provider_kumulos.testing.emulator import KumulosEmulator

JSONL_LINES = [
    '{"identifier": "a", "attributes": {"n": 1}}',
    "",
    '{"identifier": "b", "attributes": {"n": 2}',  # truncated
    "[1, 2]",  # not an object
    '{"identifier": "d", "attributs": {"n": 4}}',  # misspelt key
]


def test_unreadable_jsonl_lines_are_kept_verbatim_in_the_failures_file(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text("\r\n".join(JSONL_LINES) + "\r\n")
    failures = tmp_path / "failed.jsonl"
    summary = run(
        SetAttributesOperator(
            task_id="t", source_path=str(source), max_failures=10, failures_path=str(failures)
        )
    )
    assert (summary["succeeded"], summary["failed"]) == (1, 3)
    written = read_jsonl(failures)
    assert [(line["error"]["where"], line["source_line"]) for line in written] == [
        ("source_path line 3", JSONL_LINES[2]),
        ("source_path line 4", JSONL_LINES[3]),
        ("source_path line 5", JSONL_LINES[4]),
    ]
    # One line number per message: the source's, not the JSON decoder's own count.
    messages = [line["error"]["message"] for line in written]
    assert [re.findall(r"line \d+", message) for message in messages] == [
        ["line 3"],
        ["line 4"],
        ["line 5"],
    ]
    assert "not valid JSON (Expecting ',' delimiter at column" in messages[0]


def test_fixed_failures_fed_back_converge(kumulos_connection: KumulosEmulator, tmp_path: Path) -> None:
    """The documented workflow: repair each failed record from its source_line and pass the file back."""
    emu = kumulos_connection
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(JSONL_LINES) + "\n")
    first = tmp_path / "failed-1.jsonl"
    run(
        SetAttributesOperator(task_id="t", source_path=str(source), max_failures=10, failures_path=str(first))
    )
    repairs = {
        JSONL_LINES[2]: JSONL_LINES[2] + "}",
        JSONL_LINES[3]: '{"identifier": "c", "attributes": {"n": 3}}',
        JSONL_LINES[4]: JSONL_LINES[4].replace("attributs", "attributes"),
    }
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("".join(repairs[line["source_line"]] + "\n" for line in read_jsonl(first)))
    summary = run(SetAttributesOperator(task_id="t", source_path=str(fixed)))
    assert (summary["succeeded"], summary["failed"]) == (3, 0)
    assert {ident: emu.get_attributes(ident) for ident in "abcd"} == {
        ident: {"n": n} for n, ident in enumerate("abcd", 1)
    }


def test_unreadable_csv_rows_keep_every_cell_as_its_text(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    emu = kumulos_connection
    source = tmp_path / "users.csv"
    rows = [
        ["identifier", "age", "vip", "city"],
        ["a", "41", "yes", "Paris"],
        ["b", "forty", "no", "Lyon, Rhône"],  # age is not an int
        ["c", "3"],  # too few fields
    ]
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    failures = tmp_path / "failed.jsonl"
    summary = run(
        SetAttributesOperator(
            task_id="t",
            source_path=str(source),
            attribute_types={"age": "int", "vip": "bool"},
            max_failures=10,
            failures_path=str(failures),
        )
    )
    assert (summary["succeeded"], summary["failed"]) == (1, 2)
    assert emu.get_attributes("a") == {"age": 41, "vip": True, "city": "Paris"}
    written = read_jsonl(failures)
    assert [(line["identifier"], line["attributes"], line["source_line"]) for line in written] == [
        ("b", {"age": "forty", "vip": "no", "city": "Lyon, Rhône"}, 'b,forty,no,"Lyon, Rhône"'),
        ("c", None, "c,3"),
    ]


def test_unusable_list_items_are_kept_as_json_text(
    kumulos_connection: KumulosEmulator, tmp_path: Path
) -> None:
    records: list[Any] = [
        {"identifier": "a", "attributes": {"n": 1}},
        ["b", {"n": 2}],  # not an object
        {"id": "c", "attributes": {"n": 3}},  # wrong identifier key
    ]
    failures = tmp_path / "failed.jsonl"
    summary = run(
        SetAttributesOperator(task_id="t", records=records, max_failures=10, failures_path=str(failures))
    )
    assert (summary["succeeded"], summary["failed"]) == (1, 2)
    written = read_jsonl(failures)
    assert [(line["error"]["where"], json.loads(line["source_line"])) for line in written] == [
        ("records[1]", ["b", {"n": 2}]),
        ("records[2]", {"id": "c", "attributes": {"n": 3}}),
    ]


def test_a_line_without_a_readable_identifier_is_named_so_in_errors_and_logs(
    kumulos_connection: KumulosEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(JSONL_LINES) + "\n")
    with pytest.raises(KumulosError) as caught:
        run(SetAttributesOperator(task_id="t", source_path=str(source), max_failures=0))
    message = str(caught.value)
    assert "source_path line 3 (no identifier could be read): KumulosInputError (not sent)" in message
    assert "source_path line 4 (no identifier could be read): KumulosInputError (not sent)" in message
    assert "source_path line 5 'd': KumulosInputError (not sent)" in message
    assert "None" not in message
    (logged,) = [line for line in capsys.readouterr().out.splitlines() if "First failures" in line]
    assert "source_path line 3 (no identifier could be read): KumulosInputError (not sent)" in logged
    assert "None" not in logged
