"""Scenario 4, hostile input: any user id or attribute object either fails before a request or round-trips.

User ids are drawn from all of Unicode (lone surrogates included) plus path-breaking pieces (``/``,
``..``, ``%``, ``?``, ``#``, control characters) and strings up to 10,000 characters. Each one is
refused with a ``KumulosInputError`` naming ``user_id`` while the emulator's log stays unchanged, or
its PUT, GET and DELETE reach exactly that user (the identifier the emulator decoded from the path)
and nobody else changes. Attribute objects that are not objects, have non-string keys at any depth,
hold NaN, non-JSON values, deep nesting or megabytes of data are refused clearly or come back equal.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import Figures, Stopwatch

from airflow_provider_kumulos._policy import MAX_USER_ID_LENGTH
from airflow_provider_kumulos.exceptions import KumulosInputError, KumulosValidationError
from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator
from airflow_provider_kumulos.triggers.kumulos import SUCCESS, KumulosUserTrigger

CONN_ID = "kumulos_hostile"
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

_PIECES = [
    "/",
    "..",
    ".",
    "%",
    "%2F",
    "%2e%2e",
    "?",
    "#",
    "\\",
    "\x00",
    "\r\n",
    "\x7f",
    " ",
    "é",
    "😀",
    "\ud800",
]
#: Any code point, lone surrogates included, with path-breaking characters drawn often.
CHARACTERS = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.sampled_from(list("/.%?#\\\x00\r\n\t\x7f ")),
)
USER_IDS = st.one_of(
    st.text(CHARACTERS, max_size=40),
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=12).map("".join),
    st.sampled_from(
        [".", "..", "...", "/", "//", "../admin", "a/../b", "%", "%25", "%2F", "?x=1", "#top", " "]
    ),
    st.builds(
        lambda piece, count: piece * count,
        st.sampled_from(["a", "é", "/", "%", "😀", "."]),
        st.integers(900, 10_000),
    ),
)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
HOSTILE_VALUES = st.one_of(
    st.just(math.nan),
    st.just(-math.inf),
    st.just({"nested": [1, {"deeper": math.nan}]}),
    st.builds(set, st.lists(st.integers(), max_size=3)),
    st.just(b"bytes"),
    st.just(object()),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=3),
    st.just({"ok": {1: "int key, nested"}}),
    st.just([{"x": {None: 1}}]),
)


def _nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return {"deep": value}


ATTRIBUTES = st.one_of(
    st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8),
    st.dictionaries(st.text(max_size=12), st.one_of(JSON_VALUES, HOSTILE_VALUES), min_size=1, max_size=4),
    st.dictionaries(st.one_of(st.integers(), st.none(), st.booleans()), JSON_VALUES, min_size=1, max_size=3),
    st.one_of(st.lists(JSON_VALUES, max_size=3), st.text(max_size=10), st.integers(), st.none()),
    st.integers(1, 3000).map(_nested),
    st.integers(1, 4).map(lambda megabytes: {"blob": "x" * (megabytes * 1_000_000)}),
)


@pytest.fixture(scope="module")
def emulator() -> Iterator[KumulosEmulator]:
    """One emulator for every example of this module (50 generated users to stay untouched)."""
    with KumulosEmulator(users=50) as running:
        yield running


@pytest.fixture(scope="module")
def hook(emulator: KumulosEmulator) -> Iterator[KumulosCRMHook]:
    """A hook on the emulator with quick retries (hypothesis reuses it across examples)."""
    with pytest.MonkeyPatch.context() as patch:
        extras = {"max_retries": 1, "backoff_base": 0.01, "backoff_max": 0.02, "timeout": 10}
        patch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", emulator.connection_uri(**extras))
        client = KumulosCRMHook(CONN_ID)
        yield client
        client.close()


@pytest.fixture(scope="module")
def tally(figures: Figures) -> Iterator[dict[str, int]]:
    """Counts outcomes across this module's examples and records them as figures at its end."""
    counts: dict[str, int] = {}
    watch = Stopwatch()
    yield counts
    figures.record("4 hostile input", **counts, duration_s=watch.seconds)


def _count(tally: dict[str, int], outcome: str) -> None:
    tally[outcome] = tally.get(outcome, 0) + 1


def _is_valid_id(user_id: str) -> bool:
    """The documented rule, restated: a non-empty str of at most 1024 characters, encodable as UTF-8."""
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return 0 < len(user_id) <= MAX_USER_ID_LENGTH


def _others(emulator: KumulosEmulator, user_id: str) -> dict[str, Any]:
    return {user["identifier"]: user for user in emulator.users() if user["identifier"] != user_id}


@PROPERTY
@given(user_id=USER_IDS)
def test_any_user_id_reaches_exactly_its_user_or_fails_before_sending(
    hook: KumulosCRMHook, emulator: KumulosEmulator, tally: dict[str, int], user_id: str
) -> None:
    before = len(emulator.requests)
    others = _others(emulator, user_id)
    attributes = {"probe": len(user_id), "marker": "hostile-id"}
    try:
        hook.set_attributes(user_id, attributes)
    except KumulosInputError as error:
        assert error.parameter == "user_id"
        assert not _is_valid_id(user_id), f"a valid id was refused: {error}"
        assert len(emulator.requests) == before, "a request was sent for a refused id"
        _count(tally, "ids_refused_before_sending")
        return
    assert _is_valid_id(user_id)
    assert emulator.get_attributes(user_id) == attributes
    assert hook.get_attributes(user_id) == attributes
    hook.delete_attributes(user_id)
    assert emulator.get_attributes(user_id) == {}
    sent = emulator.requests[before:]
    assert [(entry.method, entry.identifier) for entry in sent] == [
        ("PUT", user_id),
        ("GET", user_id),
        ("DELETE", user_id),
    ]
    assert _others(emulator, user_id) == others, "another user changed"
    _count(tally, "ids_round_tripped")


@settings(PROPERTY, max_examples=40)
@given(user_id=USER_IDS.filter(_is_valid_id))
def test_the_trigger_reaches_exactly_the_same_user(
    hook: KumulosCRMHook, emulator: KumulosEmulator, tally: dict[str, int], user_id: str
) -> None:
    """The deferrable sensor's async client (httpx) must not re-encode or normalise the path either."""
    emulator.set_attributes(user_id, {"via": "trigger"})
    before = len(emulator.requests)
    trigger = KumulosUserTrigger(
        user_id=user_id, kumulos_conn_id=CONN_ID, poke_interval=0.01, attributes_match={"via": "trigger"}
    )

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger fired no event")

    # Matching the attributes just set proves the trigger read this user, not a normalised neighbour.
    assert asyncio.run(first_event()) == {"status": SUCCESS, "user_id": user_id}
    assert [(entry.method, entry.identifier) for entry in emulator.requests[before:]] == [("GET", user_id)]
    _count(tally, "trigger_ids_checked")


@PROPERTY
@given(attributes=ATTRIBUTES)
def test_any_attribute_object_round_trips_or_is_refused_clearly(
    hook: KumulosCRMHook, emulator: KumulosEmulator, tally: dict[str, int], attributes: Any
) -> None:
    user_id = "attribute-probe"
    before = len(emulator.requests)
    try:
        hook.set_attributes(user_id, attributes)
    except KumulosInputError as error:
        assert error.parameter == "attributes"
        assert "attributes" in str(error)
        assert len(emulator.requests) == before, "a request was sent for refused attributes"
        _count(tally, "attributes_refused_before_sending")
        return
    except KumulosValidationError as error:
        # Nesting the client can encode but the server cannot parse or store: a plain 422, once.
        assert error.status == 422 and error.body["errors"]["body"]
        assert [entry.status for entry in emulator.requests[before:]] == [422]
        _count(tally, "attributes_refused_by_server_422")
        return
    assert hook.get_attributes(user_id) == attributes
    assert json.dumps(emulator.get_attributes(user_id), sort_keys=True) == json.dumps(
        attributes, sort_keys=True
    )
    _count(tally, "attributes_round_tripped")


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        ({"segment": {1: "gold"}}, "found int key 1 at attributes['segment']"),
        ({"list": [{"ok": 1}, {None: 2}]}, "found NoneType key None at attributes['list'][1]"),
        ({"flag": {True: "yes"}}, "found bool key True at attributes['flag']"),
    ],
)
def test_nested_non_string_keys_are_refused_not_stringified(
    hook: KumulosCRMHook, emulator: KumulosEmulator, attributes: dict[str, Any], problem: str
) -> None:
    """JSON would send ``{1: "gold"}`` as ``{"1": "gold"}``: a silent change, so it is refused."""
    before = len(emulator.requests)
    with pytest.raises(KumulosInputError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        hook.set_attributes("nested-keys", attributes)
    assert len(emulator.requests) == before


def test_nesting_the_server_cannot_take_is_a_single_422_not_a_retried_dropped_connection(
    hook: KumulosCRMHook, emulator: KumulosEmulator
) -> None:
    before = len(emulator.requests)
    with pytest.raises(KumulosValidationError) as caught:
        hook.set_attributes("deep-probe", _nested(700))
    assert caught.value.status == 422
    assert [(entry.method, entry.status) for entry in emulator.requests[before:]] == [("PUT", 422)]
    assert emulator.get_attributes("deep-probe") is None


def test_edge_cases_are_refused_naming_the_parameter(hook: KumulosCRMHook, emulator: KumulosEmulator) -> None:
    """Fixed examples of each refusal, whatever hypothesis happens to draw."""
    before = len(emulator.requests)
    for call, parameter in (
        (lambda: hook.set_attributes("", {"a": 1}), "user_id"),
        (lambda: hook.set_attributes("x" * 10_000, {"a": 1}), "user_id"),
        (lambda: hook.get_attributes("\udc80"), "user_id"),
        (lambda: hook.delete_attributes("lone \ud800 surrogate"), "user_id"),
        (lambda: hook.set_attributes("ok", {"a": math.nan}), "attributes"),
        (lambda: hook.set_attributes("ok", _nested(100_000)), "attributes"),
        (lambda: hook.set_attributes("ok", ["not", "an", "object"]), "attributes"),  # type: ignore[arg-type]
    ):
        with pytest.raises(KumulosInputError) as caught:
            call()
        assert caught.value.parameter == parameter
    assert len(emulator.requests) == before
