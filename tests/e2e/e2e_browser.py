"""Airflow's own UI in a real browser: Debian's Chromium driven by Playwright, as a user would click.

Against the deployment's api-server (which serves the UI): sign in through the auth manager's login
page, open the Add Connection form for the Kumulos type and compare what it shows with what the
provider declares (labels, placeholders, help texts, the server key masked), read the provider's
entry on the Providers page (its description reads correctly, its link is the documentation's), and
open finished task instances of the example DAGs: their Rendered Templates page must show the
rendered values, their log the provider's lines and no attribute value and no server key.

Every check runs even when an earlier one failed; each prints one line, and a failed one leaves a
screenshot of the page beside the run's logs. Playwright is imported only when the phase runs, so
the pure helpers here are tested in the normal suite without it.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from e2e_checks import Figures

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
#: Flags known to work as root on a machine without a display, GPU or internet.
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Tall enough that the log viewer (which renders only the rows in view) shows a whole short log.
VIEWPORT: ViewportSize = {"width": 1400, "height": 2400}
#: Milliseconds any one page element may take to appear on a loaded machine.
STEP_TIMEOUT_MS = 60_000
#: Hidden connection fields and the labels Airflow gives them when shown.
STANDARD_LABELS = {
    "host": "Host",
    "schema": "Schema",
    "login": "Login",
    "password": "Password",
    "port": "Port",
}
#: Fields of the form that are not the connection type's own.
FORM_FRAME = {"Connection ID", "Connection Type", "Description"}
#: Punctuation glued to the next word ("/:export"): a link's text swallowed the separator.
GLUED = re.compile(r"\S*[:;,](?=[^\s/\d])\S*")

#: Client-side navigation: the UI's router follows the history entry as after a click on a link.
_NAVIGATE_JS = """path => {
    window.history.pushState({}, '', path);
    window.dispatchEvent(new PopStateEvent('popstate', {state: {}}));
  }"""
#: One field of a form as the browser shows it: ``input_type`` is None without an input element.
_FIELDS_JS = """root => Array.from(root.querySelectorAll('[data-scope="field"][data-part="root"]'))
  .filter(f => f.checkVisibility() && f.querySelector('[data-part="label"]'))
  .map(f => {
    const input = f.querySelector('input:not([type="hidden"]), textarea');
    return {
      label: f.querySelector('[data-part="label"]').textContent.replace(/\\s*\\*\\s*$/, '').trim(),
      input_type: input ? (input.getAttribute('type') || input.tagName.toLowerCase()) : null,
      placeholder: input ? (input.getAttribute('placeholder') || '') : '',
      help: (f.querySelector('[data-part="helper-text"]') || {textContent: ''}).textContent.trim(),
    };
  })"""
#: Name and value of each rendered field (the code viewer's line numbers left out).
_RENDERED_JS = """rows => rows.map(row => {
    const cells = row.querySelectorAll('td');
    if (cells.length < 2) return null;
    const code = cells[1].querySelector('code');
    if (!code) return [cells[0].textContent.trim(), cells[1].textContent.trim()];
    const copy = code.cloneNode(true);
    copy.querySelectorAll('.linenumber').forEach(n => n.remove());
    return [cells[0].textContent.trim(), Array.from(copy.children).map(l => l.textContent).join('\\n')];
  }).filter(Boolean)"""


@dataclass(frozen=True)
class FormField:
    """One field of a form as shown: label, input type, placeholder and help text."""

    label: str
    input_type: str | None
    placeholder: str = ""
    help: str = ""


@dataclass(frozen=True)
class TaskPage:
    """A finished task instance to open, what its Rendered Templates page must show (field: value)
    and which texts its log must hold."""

    dag_id: str
    run_id: str
    task_id: str
    rendered: Mapping[str, str]
    log_lines: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"/dags/{quote(self.dag_id)}/runs/{quote(self.run_id, safe='')}/tasks/{quote(self.task_id)}"


@dataclass
class Outcome:
    """The checks that ran and the ones that failed, with why."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


# -- what the pages must show (pure) -------------------------------------------------------------


def connection_form_problems(
    standard: Iterable[FormField], extra: Iterable[FormField], connection_type: Mapping[str, Any]
) -> list[str]:
    """What the Kumulos connection form shows that differs from the provider's declaration
    (``connection-types`` entry of ``get_provider_info()``); empty when it matches."""
    behaviour = connection_type["ui-field-behaviour"]
    shown = {item.label: item for item in standard if item.label not in FORM_FRAME}
    problems = []
    for name, label in behaviour["relabeling"].items():
        found = shown.get(label)
        if found is None:
            problems.append(f"no standard field {label!r} ({name}); the form shows {sorted(shown)}")
            continue
        placeholder = behaviour["placeholders"].get(name, "")
        if found.placeholder != placeholder:
            problems.append(f"{label!r} shows placeholder {found.placeholder!r}, declared {placeholder!r}")
        if name == "password" and found.input_type != "password":
            problems.append(f"{label!r} is not masked (input type {found.input_type!r})")
    for name in behaviour["hidden-fields"]:
        if STANDARD_LABELS.get(name, name) in shown:
            problems.append(f"hidden field {name!r} is shown")
    extras = {item.label: item for item in extra if item.label not in FORM_FRAME}
    declared = {spec["label"]: spec for spec in connection_type["conn-fields"].values()}
    for label, spec in declared.items():
        found = extras.get(label)
        description = spec.get("description", "")
        if found is None:
            problems.append(f"no extra field {label!r}; the form shows {sorted(extras)}")
        elif not found.help:
            problems.append(f"extra field {label!r} has no help text")
        elif found.help != description:
            problems.append(f"extra field {label!r} shows help {found.help!r}, declared {description!r}")
    unexpected = sorted(set(extras) - set(declared))
    if unexpected:
        problems.append(f"extra fields the provider does not declare: {unexpected}")
    return problems


def description_problems(text: str, links: Collection[str], doc_url: str) -> list[str]:
    """What is wrong with the provider's description as the Providers page renders it: ``text`` is
    the cell's text, ``links`` the targets of its links."""
    problems = []
    if doc_url not in links:
        problems.append(f"no link to {doc_url} (links: {sorted(links)})")
    wrong = sorted(link for link in links if link != doc_url)
    if wrong:
        problems.append(f"links to {wrong}, expected only {doc_url}")
    glued = GLUED.findall(text)
    if glued:
        problems.append(f"words run together at {glued} in {text!r}")
    if any(mark in text for mark in ("`", "<http", ">`__")):
        problems.append(f"markup shown as text: {text!r}")
    return problems


def rendered_problems(shown: Mapping[str, str], expected: Mapping[str, str]) -> list[str]:
    """Rendered fields missing, unrendered (still a template) or with another value than expected."""
    problems = []
    for name, value in expected.items():
        if name not in shown:
            problems.append(f"field {name!r} not shown (shown: {sorted(shown)})")
        elif shown[name] != value:
            problems.append(f"field {name!r} shows {shown[name]!r}, expected {value!r}")
    templates = sorted(name for name, value in shown.items() if "{{" in value or "{%" in value)
    if templates:
        problems.append(f"fields still templates: {templates}")
    return problems


def text_problems(text: str, required: Iterable[str], forbidden: Iterable[str], where: str) -> list[str]:
    """``required`` texts missing from ``text``, and ``forbidden`` ones in it (named by count only:
    they are user data or secrets)."""
    problems = [f"{where} lacks {line!r}" for line in required if line not in text]
    leaked = sum(1 for value in forbidden if value in text)
    if leaked:
        problems.append(f"{where} shows {leaked} attribute values or secrets")
    return problems


# -- the browser ---------------------------------------------------------------------------------


class BrowserPhase:
    """Runs each UI check in one signed-in Chromium page, printing a line per check."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        screenshots: Path,
        forbidden: Collection[str],
    ) -> None:
        """``forbidden``: texts no page may show (attribute values, the server key)."""
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.screenshots = screenshots
        self.forbidden = forbidden
        self.outcome = Outcome()

    def run(
        self, connection_type: Mapping[str, Any], doc_url: str, tasks: Iterable[TaskPage], figures: Figures
    ) -> str | None:
        """Every check; returns the failures described, or None when all passed."""
        from playwright.sync_api import sync_playwright

        started = time.monotonic()
        self.screenshots.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
            sync_playwright() as playwright,
        ):
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=list(LAUNCH_ARGS),
                viewport=VIEWPORT,
            )
            version = context.browser.version if context.browser else "?"
            try:
                context.set_default_timeout(STEP_TIMEOUT_MS)
                page = context.new_page()
                self._check("sign in", page, lambda: self._sign_in(page))
                self._check("connection form", page, lambda: self._connection_form(page, connection_type))
                self._check("providers page", page, lambda: self._providers(page, doc_url))
                for task in tasks:
                    label = f"{task.dag_id}.{task.task_id}"
                    self._check(f"{label} rendered fields", page, partial(self._rendered, page, task))
                    self._check(f"{label} log", page, partial(self._log, page, task))
            finally:
                context.close()
        figures.add(
            "browser (Chromium)",
            f"{len(self.outcome.passed)} of {len(self.outcome.passed) + len(self.outcome.failed)} UI checks "
            f"passed in {time.monotonic() - started:.1f}s (Chromium {version}, Playwright)",
        )
        if not self.outcome.failed:
            return None
        return f"{len(self.outcome.failed)} browser checks failed: " + "; ".join(self.outcome.failed)

    def _check(self, name: str, page: Page, check: Callable[[], list[str]]) -> None:
        """Run one check; a failure (problems, or an error such as a timeout) leaves a screenshot."""
        started = time.monotonic()
        try:
            problems = check()
        except Exception as exc:
            problems = [f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]
        seconds = time.monotonic() - started
        if not problems:
            self.outcome.passed.append(name)
            print(f"[e2e] browser: {name}: ok ({seconds:.1f}s)", flush=True)
            return
        shot = self.screenshots / f"browser-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
        except Exception as exc:
            shot = Path(f"(no screenshot: {type(exc).__name__})")
        summary = "; ".join(problems)
        self.outcome.failed.append(f"{name}: {summary}")
        print(f"[e2e] browser: {name}: FAILED ({seconds:.1f}s): {summary} [screenshot {shot}]", flush=True)

    def _open(self, page: Page, path: str) -> None:
        """Go to ``path`` inside the UI as its own links do (history API, no reload of the app's
        scripts, which takes seconds on a loaded machine); the first visit loads the page."""
        if page.url.startswith(self.base_url) and "/auth/" not in page.url:
            page.evaluate(_NAVIGATE_JS, path)
        else:
            page.goto(f"{self.base_url}{path}", wait_until="domcontentloaded")

    def _sign_in(self, page: Page) -> list[str]:
        """The UI sends an anonymous visitor to the login page; the admin's credentials get them in."""
        self._open(page, "/")
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(self.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        page.get_by_role("link", name="Dags").first.wait_for()
        return []

    def _connection_form(self, page: Page, connection_type: Mapping[str, Any]) -> list[str]:
        """Add Connection, type Kumulos: the standard fields, then the extra fields, as declared; the
        server key stays masked once typed."""
        self._open(page, "/connections")
        page.get_by_role("button", name="Add Connection").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("combobox", name="Connection Type").fill("Kumulos")
        dialog.get_by_role("option", name=str(connection_type["hook-name"])).click()
        server_key = dialog.get_by_label(str(connection_type["ui-field-behaviour"]["relabeling"]["password"]))
        server_key.fill("typed-server-key")
        standard = _fields(dialog)
        self._screenshot(page, "browser-connection-form-standard.png")
        dialog.get_by_role("button", name="Extra Fields", exact=True).click()
        dialog.get_by_role("spinbutton").first.wait_for()
        # The standard section may still be collapsing while the extra one opens: leave its fields out.
        standard_labels = {item.label for item in standard}
        extra = [item for item in _fields(dialog) if item.label not in standard_labels]
        self._screenshot(page, "browser-connection-form-extra.png")
        return connection_form_problems(standard, extra, connection_type)

    def _providers(self, page: Page, doc_url: str) -> list[str]:
        """The provider's row on the Providers page: its description reads and links correctly."""
        self._open(page, "/providers")
        cell = (
            page.get_by_role("row")
            .filter(has_text="airflow-provider-kumulos")
            .locator('[data-testid="table-cell-description"]')
        )
        cell.wait_for()
        text = " ".join(str(cell.text_content() or "").split())
        links = [str(link.get_attribute("href")) for link in cell.get_by_role("link").all()]
        self._screenshot(page, "browser-providers.png")
        return description_problems(text, links, doc_url)

    def _rendered(self, page: Page, task: TaskPage) -> list[str]:
        """The task's Rendered Templates page shows the rendered values and nothing forbidden."""
        self._open(page, f"{task.path}/rendered_templates")
        rows = page.get_by_role("row").filter(has_text=next(iter(task.rendered)))
        rows.first.wait_for()
        shown = dict(page.get_by_role("row").evaluate_all(_RENDERED_JS))
        body = str(page.locator("body").text_content() or "")
        return rendered_problems(shown, task.rendered) + text_problems(
            body, (), self.forbidden, "the Rendered Templates page"
        )

    def _log(self, page: Page, task: TaskPage) -> list[str]:
        """The task's log, as the UI shows it, holds the expected lines and nothing forbidden."""
        self._open(page, task.path)
        page.get_by_role("button", name="Press d to download logs").wait_for()
        page.locator("code").filter(has_text="Post Execute").first.wait_for()
        body = str(page.locator("body").text_content() or "")
        if task.dag_id == "kumulos_export_users":
            self._screenshot(page, "browser-task-log.png")
        return text_problems(body, task.log_lines, self.forbidden, "the task log")

    def _screenshot(self, page: Page, name: str) -> None:
        page.screenshot(path=str(self.screenshots / name), full_page=True)


def _fields(root: Locator) -> list[FormField]:
    return [FormField(**item) for item in root.evaluate(_FIELDS_JS)]
