"""The README's statements a newcomer relies on, checked against the code they describe."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from airflow_provider_kumulos import _policy
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _type(annotation: Any) -> str:
    """An annotation as a reader writes it (postponed annotations are strings already)."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return text.replace("_policy.", "")


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a ``|`` (as in ``int | None``) would end the cell."""
    return text.replace("|", "\\|")


def _parameters(signature: inspect.Signature) -> str:
    parts: list[str] = []
    keyword_only_marked = False
    for parameter in list(signature.parameters.values())[1:]:  # without self / cls
        if parameter.kind is parameter.KEYWORD_ONLY and not keyword_only_marked:
            parts.append("*")
            keyword_only_marked = True
        text = parameter.name
        if parameter.annotation is not parameter.empty:
            text += f": {_type(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            text += f" = {parameter.default!r}"
        parts.append(text)
    return ", ".join(parts)


def _summary(member: Any) -> str:
    """The docstring's first paragraph, with reST markup turned into Markdown."""
    paragraph = " ".join(inspect.getdoc(member).split("\n\n")[0].split())  # type: ignore[union-attr]
    paragraph = re.sub(r":\w+:`~?(?:[\w.]+\.)?(\w+)`", r"`\1`", paragraph)
    return paragraph.replace("``", "`")


def hook_methods_markdown() -> str:
    """The hook's public methods as a Markdown table: signature, return type, what each does."""
    rows = ["| method | returns | what it does |", "| --- | --- | --- |"]
    init = inspect.signature(KumulosCRMHook.__init__)
    rows.append(
        f"| `KumulosCRMHook({_cell(_parameters(init))})` | | arguments override the connection's extras "
        "of the same name |"
    )
    for name, member in vars(KumulosCRMHook).items():
        if name.startswith("_"):
            continue
        function = member.__func__ if isinstance(member, classmethod) else member
        if isinstance(member, property | type(KumulosCRMHook.config)):
            getter = member.fget if isinstance(member, property) else member.func
            returns = _type(inspect.signature(getter).return_annotation)
            rows.append(f"| `{name}` (property) | `{_cell(returns)}` | {_summary(getter)} |")
        elif inspect.isfunction(function):
            signature = inspect.signature(function)
            returns = _type(signature.return_annotation)
            rows.append(
                f"| `{name}({_cell(_parameters(signature))})` | `{_cell(returns)}` | {_summary(function)} |"
            )
    page_fields = ", ".join(
        f"`{field.name}: {_type(field.type)}`" for field in dataclasses.fields(_policy.UsersPage)
    )
    rows.append("")
    rows.append(f"A `UsersPage` (`from {KumulosCRMHook.__module__} import UsersPage`) has {page_fields}.")
    return "\n".join(rows) + "\n"


def test_readme_lists_the_hooks_public_methods_with_signatures() -> None:
    expected = hook_methods_markdown()
    assert expected in README, "README's hook table differs from the hook; expected:\n" + expected


def test_every_public_method_is_in_the_table() -> None:
    table = hook_methods_markdown()
    public = [name for name in vars(KumulosCRMHook) if not name.startswith("_") and name[0].islower()]
    for name in ("get_attributes", "set_attributes", "iter_pages", "fetch_users_page", "close"):
        assert name in public
    for name in public:
        if callable(getattr(KumulosCRMHook, name, None)) or name == "config":
            assert f"`{name}" in table, name


def test_readme_names_the_airflow_cli_of_the_virtual_environment() -> None:
    assert "`.venv/bin/airflow`" in README
    # What the README promises exists in the environment `make venv` builds (the one running this).
    assert (Path(sys.executable).parent / "airflow").is_file()


def test_readme_says_which_generated_identifiers_exist() -> None:
    from airflow_provider_kumulos.testing.emulator import KumulosEmulator

    text = " ".join(README.split())
    for users, said in ((1_000, "6.5% of the first 1,000"), (10_000, "5.4% of 10,000")):
        ids = KumulosEmulator(users=users).user_ids()
        uuids = [identifier for identifier in ids if not identifier.startswith("user-")]
        assert said in text and said.startswith(f"{len(uuids) / users:.1%}")
        assert "user-000036" not in ids and all(len(identifier) == 36 for identifier in uuids)
    assert "`user-000036` does not exist with the default seed" in text
