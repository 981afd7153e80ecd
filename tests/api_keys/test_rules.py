"""The pure rules of API keys: scope subsets, names, lifetimes, the session id of exchanged tokens."""

from __future__ import annotations

import pytest

from keyturn.domain.api_keys import (
    MAX_EXPIRES_IN,
    MIN_EXPIRES_IN,
    api_key_session_id,
    check_expires_in,
    check_name,
    check_scopes,
    is_api_key_session,
)
from keyturn.errors import ValidationFailed


def test_scopes_must_be_a_subset_of_the_granted_ones() -> None:
    """Requested scopes come back unique and sorted; one not granted names itself in the error."""
    assert check_scopes(["b", "a", "b"], ["a", "b", "c"]) == ("a", "b")
    assert check_scopes([], []) == ()
    with pytest.raises(ValidationFailed) as caught:
        check_scopes(["a", "z"], ["a"])
    assert caught.value.fields == {"scopes": "not granted to you: z"}
    with pytest.raises(ValidationFailed):
        check_scopes([f"s{n}" for n in range(65)], [f"s{n}" for n in range(65)])


@pytest.mark.parametrize(
    "scope",
    ["a b", "", 'quo"te', "back\\slash", "x" * 129, "tab\t"],
    ids=["space", "empty", "quote", "backslash", "long", "tab"],
)
def test_malformed_scopes_are_refused(scope: str) -> None:
    """Scopes follow RFC 6749 §3.3 scope-token syntax, even when the name is granted."""
    with pytest.raises(ValidationFailed) as caught:
        check_scopes([scope], [scope])
    assert "scopes" in caught.value.fields


def test_names_are_stripped_and_bounded() -> None:
    """A name is trimmed; empty, overlong or control-character names are refused."""
    assert check_name("  deploy  ") == "deploy"
    for bad in ("", "   ", "x" * 201, "a\x00b"):
        with pytest.raises(ValidationFailed):
            check_name(bad)


def test_lifetimes_are_bounded() -> None:
    """No lifetime means no expiry; otherwise it lies between the bounds."""
    assert check_expires_in(None) is None
    assert check_expires_in(MIN_EXPIRES_IN) == MIN_EXPIRES_IN
    assert check_expires_in(MAX_EXPIRES_IN) == MAX_EXPIRES_IN
    for bad in (MIN_EXPIRES_IN - 1, MAX_EXPIRES_IN + 1, 0, -5):
        with pytest.raises(ValidationFailed):
            check_expires_in(bad)


def test_exchanged_tokens_are_recognisable_by_session_id() -> None:
    """The sid of an exchanged token marks it as an API key's; a login session's UUID does not."""
    assert api_key_session_id("k1") == "ak_k1"
    assert is_api_key_session("ak_k1")
    assert not is_api_key_session("3f0c6a52-3b5e-4a8e-9a51-1f3f2b8f4c11")
    assert not is_api_key_session(None)
