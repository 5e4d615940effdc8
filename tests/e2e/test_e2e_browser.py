"""The browser phase's verdicts on what a page shows, and the log scan for secrets and user data.

These run in the normal suite (no browser, no deployment): the phase itself runs via ``.ci/e2e.sh``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_browser import (
    FormField,
    TaskPage,
    connection_form_problems,
    description_problems,
    rendered_problems,
    text_problems,
)
from e2e_leaks import describe_leaks, find_leaks, log_files, person, personal_values, scan_logs

from airflow_provider_kumulos import get_provider_info

DOCS = "https://docs.kumulos.com/"


def _kumulos_type() -> dict[str, Any]:
    info = get_provider_info()
    return next(item for item in info["connection-types"] if item["connection-type"] == "kumulos")


def _form_as_declared(connection_type: dict[str, Any]) -> tuple[list[FormField], list[FormField]]:
    """The fields a correct form shows for ``connection_type``: what the browser would read."""
    behaviour = connection_type["ui-field-behaviour"]
    standard = [FormField("Connection ID", "text"), FormField("Description", "textarea")] + [
        FormField(
            label,
            "password" if name == "password" else "text",
            behaviour["placeholders"].get(name, ""),
        )
        for name, label in behaviour["relabeling"].items()
    ]
    extra = [
        FormField(spec["label"], "text", "", spec.get("description", ""))
        for spec in connection_type["conn-fields"].values()
    ]
    return standard, extra


def test_form_as_declared_passes_but_for_fields_declared_without_help() -> None:
    connection_type = _kumulos_type()
    standard, extra = _form_as_declared(connection_type)
    undocumented = [
        spec["label"] for spec in connection_type["conn-fields"].values() if not spec.get("description")
    ]
    assert connection_form_problems(standard, extra, connection_type) == [
        f"extra field {label!r} has no help text" for label in undocumented
    ]


def test_form_flags_unmasked_key_wrong_placeholder_and_shown_hidden_field() -> None:
    connection_type = _kumulos_type()
    standard, extra = _form_as_declared(connection_type)
    relabeling = connection_type["ui-field-behaviour"]["relabeling"]
    standard = [
        FormField(item.label, "text", item.placeholder)
        if item.label == relabeling["password"]
        else FormField(item.label, item.input_type, "something else")
        if item.label == relabeling["host"]
        else item
        for item in standard
    ] + [FormField("Port", "text")]
    problems = " | ".join(connection_form_problems(standard, extra, connection_type))
    assert f"{relabeling['password']!r} is not masked" in problems
    assert f"{relabeling['host']!r} shows placeholder 'something else'" in problems
    assert "hidden field 'port' is shown" in problems


def test_form_flags_missing_help_missing_field_and_undeclared_field() -> None:
    connection_type = _kumulos_type()
    standard, extra = _form_as_declared(connection_type)
    first, second, *rest = extra
    extra = [FormField(first.label, first.input_type), *rest, FormField("Surprise", "text", "", "x")]
    problems = " | ".join(connection_form_problems(standard, extra, connection_type))
    assert f"extra field {first.label!r} has no help text" in problems
    assert f"no extra field {second.label!r}" in problems
    assert "extra fields the provider does not declare: ['Surprise']" in problems


def test_form_flags_a_relabelled_field_that_is_missing() -> None:
    connection_type = _kumulos_type()
    standard, extra = _form_as_declared(connection_type)
    label = connection_type["ui-field-behaviour"]["relabeling"]["login"]
    problems = connection_form_problems([f for f in standard if f.label != label], extra, connection_type)
    assert any(problem.startswith(f"no standard field {label!r}") for problem in problems)


def test_description_that_reads_and_links_correctly_passes() -> None:
    text = "Kumulos CRM (https://docs.kumulos.com/): export users, set and delete user attributes."
    assert description_problems(text, [DOCS], DOCS) == []


def test_description_with_the_colon_in_the_link_fails() -> None:
    text = "Kumulos CRM https://docs.kumulos.com/:export users, set and delete user attributes"
    problems = description_problems(text, ["https://docs.kumulos.com/:"], DOCS)
    assert problems[0] == f"no link to {DOCS} (links: ['https://docs.kumulos.com/:'])"
    assert "links to ['https://docs.kumulos.com/:']" in problems[1]
    assert "words run together at ['https://docs.kumulos.com/:export']" in problems[2]


def test_description_with_raw_markup_fails() -> None:
    problems = description_problems("`Kumulos CRM <https://docs.kumulos.com/>`__: export", [DOCS], DOCS)
    assert any(problem.startswith("markup shown as text") for problem in problems)


def test_rendered_fields_must_hold_the_rendered_values() -> None:
    expected = {"user_id": "u-1", "kumulos_conn_id": "kumulos_default"}
    assert rendered_problems({"user_id": "u-1", "kumulos_conn_id": "kumulos_default"}, expected) == []
    problems = rendered_problems({"user_id": "{{ params.user_id }}"}, expected)
    assert problems == [
        "field 'user_id' shows '{{ params.user_id }}', expected 'u-1'",
        "field 'kumulos_conn_id' not shown (shown: ['user_id'])",
        "fields still templates: ['user_id']",
    ]


def test_text_problems_name_missing_lines_and_count_leaks_without_showing_them() -> None:
    text = "Kumulos export finished: users written 3\nAda Lovelace was here"
    assert text_problems(text, ["Kumulos export finished"], ["Grace Hopper"], "the log") == []
    problems = text_problems(text, ["not there"], ["Ada Lovelace", "x@example.com"], "the log")
    assert problems == ["the log lacks 'not there'", "the log shows 1 attribute values or secrets"]
    assert "Ada" not in " ".join(problems)


def test_task_page_path_quotes_the_run_id() -> None:
    page = TaskPage("d", "scheduled__2026-01-01T00:00:00+00:00", "t", {}, ())
    assert page.path == "/dags/d/runs/scheduled__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/t"


def test_person_values_are_distinctive_and_found() -> None:
    first, second = person(), person("burst")
    assert personal_values(first) == set(first.values())
    assert personal_values(first).isdisjoint(personal_values(second))
    assert second["email"].startswith("burst.")


def test_personal_values_keep_only_long_names_and_emails() -> None:
    attributes = {"name": "Zoë Kim", "email": "zoe.kim1@example.com", "plan": "enterprise", "age": 30}
    assert personal_values(attributes) == {"Zoë Kim", "zoe.kim1@example.com"}
    assert personal_values({"name": "Al"}) == set()
    assert personal_values(None) == set()


def test_find_leaks_reads_utf8_and_json_escaped_spellings(tmp_path: Path) -> None:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "attempt=1.log").write_text('{"event": "got {\\"name\\": \\"Zo\\u00eb Kim\\"}"}\n')
    (tmp_path / "triggerer.log").write_text("TriggerEvent<{'attributes': {'email': 'ada@example.com'}}>\n")
    (tmp_path / "kumulos-emulator.log").write_text("Zoë Kim ada@example.com clean@example.com\n")
    (tmp_path / "scheduler.log").write_text("nothing personal\n")
    files = log_files(tmp_path)
    assert tmp_path / "kumulos-emulator.log" not in files
    leaks = find_leaks(["Zoë Kim", "ada@example.com", "clean@example.com"], files)
    assert leaks == {
        "Zoë Kim": [tmp_path / "task" / "attempt=1.log"],
        "ada@example.com": [tmp_path / "triggerer.log"],
    }
    message = describe_leaks("attribute values", leaks)
    assert message is not None and message.startswith("2 attribute values appear in 2 log files")
    assert describe_leaks("attribute values", {}) is None


@pytest.mark.parametrize("value", ["plain", "Łukasz O'Neill"])
def test_find_leaks_finds_nothing_in_clean_logs(tmp_path: Path, value: str) -> None:
    (tmp_path / "a.log").write_text("INFO - Kumulos export finished: users written 200\n")
    assert find_leaks([value], log_files(tmp_path)) == {}


def test_scan_logs_names_secret_files_without_the_secret_and_the_leaked_values(tmp_path: Path) -> None:
    secret, ada = "s3cr3t-server-key", person()
    (tmp_path / "scheduler.log").write_text(f"connecting with {secret}\n")
    (tmp_path / "triggerer.log").write_text(f"event {ada}\n")
    (tmp_path / "kumulos-emulator.log").write_text(f"{secret} {ada}\n")
    report = scan_logs(secret, personal_values(ada), tmp_path)
    assert report is not None
    assert report.startswith(f"the server key appears in 1 log files, e.g. ['{tmp_path / 'scheduler.log'}']")
    assert "2 attribute values (names, e-mails) appear in 1 log files" in report
    assert secret not in report
    (tmp_path / "scheduler.log").write_text("clean\n")
    (tmp_path / "triggerer.log").write_text("clean\n")
    assert scan_logs(secret, personal_values(ada), tmp_path) is None
