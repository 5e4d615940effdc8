"""Hostile user ids travel as exactly one percent-encoded path segment and reach exactly that user."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote

import pytest

from airflow_provider_kumulos.hooks.kumulos import KumulosCRMHook
from airflow_provider_kumulos.testing.emulator import KumulosEmulator, RecordedRequest

Received = Callable[..., list[RecordedRequest]]

HOSTILE_IDS = [
    "a/b",
    "../admin",
    "q?x=1",
    "frag#ment",
    "100%",
    "%2F",
    "..",
    ".",
    "...",
    "two words",
    " leading and trailing ",
    "plus+sign&amp=;",
    "Zoë-東京-🚀",
    "tab\tnew\nline\rnull\x00bell\x07",
    "back\\slash",
    "~tilde-_.",
]


def the_segment(sent: RecordedRequest) -> str:
    """The user id segment of ``/v1/users/{id}/attributes`` as sent, asserting there is exactly one."""
    assert "?" not in sent.raw_path and "#" not in sent.raw_path
    empty, v1, users, segment, attributes = sent.raw_path.split("/")
    assert (empty, v1, users, attributes) == ("", "v1", "users", "attributes")
    assert segment not in (".", "..")
    return segment


@pytest.mark.parametrize("user_id", HOSTILE_IDS)
def test_hostile_ids_are_one_segment_and_reach_exactly_that_user(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, received: Received, user_id: str
) -> None:
    before = set(kumulos_emulator.user_ids())
    hook.set_attributes(user_id, {"probe": user_id})
    assert hook.get_attributes(user_id) == {"probe": user_id}
    hook.delete_attributes(user_id)
    assert hook.get_attributes(user_id) == {}

    sent = received()
    assert [r.method for r in sent] == ["PUT", "GET", "DELETE", "GET"]
    for request in sent:
        assert unquote(the_segment(request)) == user_id
        assert request.identifier == user_id
    assert set(kumulos_emulator.user_ids()) == before | {user_id}
    assert kumulos_emulator.get_attributes(user_id) == {}


def test_dot_segments_are_percent_encoded_on_the_wire(hook: KumulosCRMHook, received: Received) -> None:
    for user_id in (".", ".."):
        hook.set_attributes(user_id, {"a": 1})
    assert [the_segment(r) for r in received()] == ["%2E", "%2E%2E"]


def test_an_encoded_looking_id_is_not_decoded_twice(
    hook: KumulosCRMHook, kumulos_emulator: KumulosEmulator, user_id: str
) -> None:
    # "%75ser..." would name an existing user if the client decoded it before sending.
    lookalike = "%" + format(ord(user_id[0]), "02X") + user_id[1:]
    assert not hook.user_exists(lookalike)
    assert hook.user_exists(user_id)
