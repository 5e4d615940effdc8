"""Registration: Airflow finds the provider, accepts its metadata and shows the ``kumulos`` connection type.

These go through Airflow's own machinery (its JSON schema, entry points, ``ProvidersManager`` and the
``airflow providers`` CLI in the session's throwaway AIRFLOW_HOME), not through our own reading of it.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from packaging.version import Version

import airflow_provider_kumulos
from airflow_provider_kumulos import get_provider_info

PACKAGE = "airflow-provider-kumulos"
HOOK_CLASS = "airflow_provider_kumulos.hooks.kumulos.KumulosCRMHook"
DOCS = "https://docs.kumulos.com/"
# What the API and `airflow providers get --full` show: Airflow strips the reStructuredText marks.
DESCRIPTION = (
    f"Export users, set and delete user attributes, and wait for users to appear in Kumulos CRM {DOCS}"
)
# The providers page's link pattern (Airflow 3.3's UI; JavaScript's \w is ASCII only).
UI_LINK = re.compile(r"https?://[\w.-]+(?:\.?:[\w.-]+)*(?:[#/?][\w!#$%&'()*+,./:;=?@[\]~-]*)?", re.ASCII)
HOST_PLACEHOLDER = "https://crm.kumulos.com (default); no scheme means https://"
EXPECTED_BEHAVIOUR = {
    "hidden_fields": ["schema", "port"],
    "relabeling": {"login": "API key", "password": "Server key", "host": "Base URL"},
}


BEFORE_3_2 = Version(importlib.metadata.version("apache-airflow-core")) < Version("3.2.0")
# Airflow 3.2+ reads the form layout from provider info; older releases only from hooks, through wtforms (FAB).
shows_form_layouts = pytest.mark.skipif(
    BEFORE_3_2 and importlib.util.find_spec("wtforms") is None,
    reason="this Airflow shows connection form layouts only with wtforms (the FAB provider) installed",
)


def _airflow_schema() -> dict[str, Any]:
    return json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())


def _airflow_cli(*args: str) -> Any:
    """Run ``airflow <args> -o json`` in a subprocess with the session's environment; parse its output."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "-o", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_provider_info_is_valid_against_airflows_schema() -> None:
    jsonschema.validate(get_provider_info(), _airflow_schema())


def test_schema_check_rejects_broken_provider_info() -> None:
    broken = copy.deepcopy(get_provider_info())
    broken["connection-types"][0].pop("hook-class-name")
    with pytest.raises(jsonschema.ValidationError, match="hook-class-name"):
        jsonschema.validate(broken, _airflow_schema())


def test_entry_point_resolves_to_get_provider_info() -> None:
    points = [
        point
        for point in importlib.metadata.entry_points(group="apache_airflow_provider")
        if point.dist is not None and point.dist.name == PACKAGE
    ]
    assert len(points) == 1, points
    assert points[0].value == "airflow_provider_kumulos:get_provider_info"
    assert points[0].load() is get_provider_info


def test_versions_have_a_single_source() -> None:
    info = get_provider_info()
    assert info["package-name"] == PACKAGE
    assert info["versions"][0] == airflow_provider_kumulos.__version__
    assert importlib.metadata.version(PACKAGE) == airflow_provider_kumulos.__version__


def _declared_modules() -> list[str]:
    info = get_provider_info()
    return sorted(
        {
            module
            for kind in ("hooks", "operators", "sensors", "triggers")
            for entry in info[kind]
            for module in entry["python-modules"]
        }
    )


@pytest.mark.parametrize("module", _declared_modules())
def test_every_declared_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_connection_type_hook_class_resolves() -> None:
    (connection,) = get_provider_info()["connection-types"]
    module_name, _, class_name = connection["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)
    assert hook_class.conn_type == connection["connection-type"] == "kumulos"
    assert hook_class.hook_name == connection["hook-name"]


def test_airflow_providers_list_shows_the_provider(airflow_home: Any) -> None:
    listed = {row["package_name"]: row for row in _airflow_cli("providers", "list")}
    assert PACKAGE in listed, sorted(listed)
    assert listed[PACKAGE]["version"] == airflow_provider_kumulos.__version__


def test_airflow_providers_get_shows_the_provider(airflow_home: Any) -> None:
    (row,) = _airflow_cli("providers", "get", PACKAGE)
    assert row == {"Provider": PACKAGE, "Version": airflow_provider_kumulos.__version__}


def _airflow_core() -> Version:
    return Version(importlib.metadata.version("apache-airflow-core"))


def _metadata() -> Any:
    return importlib.metadata.metadata(PACKAGE)


def _project_urls() -> dict[str, str]:
    return dict(entry.split(", ", 1) for entry in _metadata().get_all("Project-URL") or [])


def test_package_metadata_links_documentation_source_changelog_and_issues() -> None:
    urls = _project_urls()
    assert sorted(urls) == ["Changelog", "Documentation", "Issues", "Source"]
    assert all(url.startswith("https://") for url in urls.values())
    assert urls["Changelog"].endswith("CHANGELOG.md")


def test_airflow_providers_get_shows_the_documentation_url_and_the_description(airflow_home: Any) -> None:
    (row,) = _airflow_cli("providers", "get", PACKAGE, "--full")
    assert row["description"] == DESCRIPTION
    if _airflow_core() >= Version("3.3"):  # Airflow 3.1's CLI shows no documentation URL
        assert row["documentation-url"] == _project_urls()["Documentation"]


def _as_the_providers_page_shows(description: str) -> tuple[str, list[str]]:
    """The text and link targets of a description on Airflow's providers page: a word matching its
    link pattern becomes a link, and no space follows a link."""
    links = UI_LINK.findall(description)
    text, targets = "", []
    for word in re.sub(r"\n(?:and)?", " ", description).split(" "):
        if word in links:
            text += word
            targets.append(word)
        else:
            text += f"{word} "
    return text, targets


def test_the_providers_page_shows_the_description_with_its_link(airflow_home: Any) -> None:
    from airflow.api_fastapi.core_api.services.public.providers import _provider_mapper
    from airflow.providers_manager import ProvidersManager

    shown = _provider_mapper(ProvidersManager().providers[PACKAGE])
    assert shown.description == DESCRIPTION
    assert _as_the_providers_page_shows(shown.description) == (DESCRIPTION, [DOCS])


def test_package_metadata_names_an_author_status_and_python_versions() -> None:
    metadata = _metadata()
    assert metadata.get("Author") or metadata.get("Author-email")
    classifiers = metadata.get_all("Classifier") or []
    assert len([c for c in classifiers if c.startswith("Development Status :: ")]) == 1
    minors = sorted(
        int(c.rsplit(".", 1)[1]) for c in classifiers if c.startswith("Programming Language :: Python :: 3.")
    )
    floor = Version(metadata["Requires-Python"].removeprefix(">="))
    assert minors and minors[0] == floor.minor and minors == list(range(minors[0], minors[-1] + 1))
    # Only Python releases Airflow itself says it runs on: the installed release runs on the oldest
    # one claimed, and the newest release on all of them (Airflow 3.1.0 names 3.10 to 3.12 only).
    airflow = importlib.metadata.metadata("apache-airflow-core").get_all("Classifier") or []
    runs_on = [minor for minor in minors if f"Programming Language :: Python :: 3.{minor}" in airflow]
    assert runs_on[:1] == minors[:1]
    if _airflow_core() >= Version("3.3"):
        assert runs_on == minors


def test_airflow_providers_get_fails_for_an_unknown_name(airflow_home: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "get", "airflow-provider-kumulos-typo"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "No such provider installed" in result.stdout + result.stderr


def _hooks_registry() -> Any:
    """The registry tasks use to map a connection type to its hook (moved to the task SDK in 3.2)."""
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:
        from airflow.providers_manager import ProvidersManager

        return ProvidersManager()
    return ProvidersManagerTaskRuntime()


def test_connection_type_is_known_to_airflow() -> None:
    hook_info = _hooks_registry().hooks["kumulos"]
    assert hook_info is not None
    assert hook_info.hook_class_name == HOOK_CLASS
    assert hook_info.connection_id_attribute_name == "kumulos_conn_id"
    assert hook_info.hook_name == "Kumulos CRM"
    assert hook_info.package_name == PACKAGE


@shows_form_layouts
def test_connection_form_behaviour_is_known_to_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    behaviour = ProvidersManager().field_behaviours["kumulos"]
    assert behaviour["hidden_fields"] == EXPECTED_BEHAVIOUR["hidden_fields"]
    assert behaviour["relabeling"] == EXPECTED_BEHAVIOUR["relabeling"]
    assert behaviour["placeholders"]["host"] == HOST_PLACEHOLDER


def test_hook_ui_field_behaviour_matches_provider_info() -> None:
    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

    (connection,) = get_provider_info()["connection-types"]
    declared = connection["ui-field-behaviour"]
    assert KumulosCRMHook.get_ui_field_behaviour() == {
        "hidden_fields": declared["hidden-fields"],
        "relabeling": declared["relabeling"],
        "placeholders": declared["placeholders"],
    }


@shows_form_layouts
def test_hook_ui_field_behaviour_matches_what_airflow_shows() -> None:
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook

    assert ProvidersManager().field_behaviours["kumulos"] == KumulosCRMHook.get_ui_field_behaviour()


@pytest.mark.skipif(
    BEFORE_3_2,
    reason="Airflow < 3.2 reads connection form fields only from hooks, and this hook declares none there",
)
def test_connection_extra_fields_are_known_to_airflow() -> None:
    from airflow.providers_manager import ProvidersManager

    widgets = {
        name: widget
        for name, widget in ProvidersManager().connection_form_widgets.items()
        if name.startswith("extra__kumulos__")
    }
    assert sorted(widgets) == [
        "extra__kumulos__connect_timeout",
        "extra__kumulos__max_retries",
        "extra__kumulos__timeout",
        "extra__kumulos__verify",
    ]
    assert all(widget.hook_class_name == HOOK_CLASS for widget in widgets.values())
    assert not any(widget.is_sensitive for widget in widgets.values())
    assert widgets["extra__kumulos__timeout"].field["schema"]["title"] == "Timeout (seconds)"


def _conn_fields() -> dict[str, Any]:
    (connection,) = get_provider_info()["connection-types"]
    fields: dict[str, Any] = connection["conn-fields"]
    return fields


@pytest.mark.parametrize("name", ["timeout", "connect_timeout", "max_retries"])
@pytest.mark.parametrize("value", [None, -1, 0, 0.0, 0.001, 1, 2.5, 30])
def test_form_fields_accept_exactly_what_the_hook_accepts(name: str, value: Any) -> None:
    from types import SimpleNamespace

    from airflow_provider_kumulos.exceptions import KumulosConfigError
    from airflow_provider_kumulos.hooks._config import resolve_client_config

    schema = _conn_fields()[name]["schema"]
    form_accepts = jsonschema.Draft202012Validator(schema).is_valid(value)
    conn = SimpleNamespace(host=None, port=None, login="k", password="s")
    try:
        config = resolve_client_config("form", conn, {name: value}, {})
    except KumulosConfigError:
        hook_accepts = False
    else:
        hook_accepts = True
        if name == "connect_timeout" and value is not None:
            assert config.connect_timeout == value
    if name == "max_retries" and isinstance(value, float) and not value.is_integer():
        assert not form_accepts  # the form asks for a whole number; the hook would truncate it
        return
    assert form_accepts == hook_accepts, (name, value, form_accepts, hook_accepts)


def test_form_describes_both_timeouts_truthfully() -> None:
    fields = _conn_fields()
    assert "stays" not in fields["timeout"]["description"]
    assert "Connect timeout" in fields["timeout"]["description"]
    assert fields["connect_timeout"]["label"] == "Connect timeout (seconds)"
    assert "default 10" in fields["connect_timeout"]["description"]
    assert "default 60" in fields["timeout"]["description"]


@pytest.mark.skipif(BEFORE_3_2, reason="Airflow < 3.2 builds the connection form from hooks (wtforms)")
def test_the_connection_form_shows_help_for_the_host_and_verify() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (form,) = [meta for meta in HookMetaService.hook_meta_data() if meta.connection_type == "kumulos"]
    assert form.standard_fields is not None
    host, port = form.standard_fields.host, form.standard_fields.port
    assert host is not None and port is not None
    assert (host.title, host.placeholder, host.hidden) == ("Base URL", HOST_PLACEHOLDER, False)
    assert port.hidden is True
    verify = form.extra_fields["verify"]
    assert verify["schema"]["title"] == "Verify TLS (true/false or CA bundle path)"
    assert "certificate" in verify["description"] and "CA bundle" in verify["description"]
    assert all(field["description"] for field in form.extra_fields.values())


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        (None, "https://crm.kumulos.com"),
        ("crm.example.com", "https://crm.example.com"),
        ("http://127.0.0.1:18080", "http://127.0.0.1:18080"),
    ],
)
def test_the_host_placeholder_says_what_the_hook_does(host: str | None, base_url: str) -> None:
    from types import SimpleNamespace

    from airflow_provider_kumulos.hooks._config import resolve_client_config

    conn = SimpleNamespace(host=host, port=None, login="k", password="s")
    assert resolve_client_config("form", conn, {}, {}).base_url == base_url


def test_importing_the_package_stays_light() -> None:
    code = (
        "import json, sys\n"
        "import airflow_provider_kumulos\n"
        "airflow_provider_kumulos.get_provider_info()\n"
        "print(json.dumps(sorted(m for m in ('airflow', 'requests', 'tenacity') if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []
