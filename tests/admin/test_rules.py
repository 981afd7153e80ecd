"""The pure rules of administration: cursors and role names."""

from __future__ import annotations

import uuid

import pytest

from keyturn.domain.administration import check_roles, decode_cursor, encode_cursor
from keyturn.errors import ConfigurationError, ValidationFailed
from keyturn.settings import load_settings


def test_cursor_round_trips_a_user_id() -> None:
    """A cursor decodes to exactly the id it was made from, and does not show it in clear."""
    user_id = str(uuid.uuid4())
    cursor = encode_cursor(user_id)
    assert user_id not in cursor
    assert "=" not in cursor
    assert decode_cursor(cursor) == user_id


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "A" * 200, "é", encode_cursor("a") + "%", "dGhpcyBpcyBub3QgYW4gaWQ"],
    ids=["empty", "not-base64", "huge", "non-ascii", "trailing-junk", "not-an-id"],
)
def test_foreign_cursors_are_refused(cursor: str) -> None:
    """Anything the server did not hand out is a validation error on the cursor field."""
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor)
    assert "cursor" in caught.value.fields


def test_roles_are_deduplicated_and_sorted() -> None:
    """Role lists are stored in one canonical form."""
    assert check_roles(["user", "admin", "user", "billing:read"]) == ("admin", "billing:read", "user")
    assert check_roles([]) == ()


@pytest.mark.parametrize(
    "roles",
    [["a b"], [""], ["_x"], ["x" * 65], ["ok", "no\n"], [f"r{n}" for n in range(33)], ["ktr_x"], ["eyJ.a.b"]],
    ids=["space", "empty", "leading-underscore", "too-long", "newline", "too-many", "token-prefix", "jwt-lookalike"],
)
def test_malformed_roles_are_refused(roles: list[str]) -> None:
    """Role names are short words; anything else is a validation error on the roles field."""
    with pytest.raises(ValidationFailed) as caught:
        check_roles(roles)
    assert "roles" in caught.value.fields


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"user": ["notes:read"], "admin": ["users:read", "notes:read"]}', ["notes:read", "users:read"]),
        ("{}", []),
    ],
    ids=["mapping", "empty-default"],
)
def test_keyturn_roles_maps_roles_to_scopes(raw: str, expected: list[str]) -> None:
    """KEYTURN_ROLES is JSON; the scopes of several roles are merged, sorted and unique."""
    assert load_settings(roles=raw).scopes_for(["user", "admin", "unmapped"]) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[]",
        '{"user": "notes:read"}',
        '{"user": ["notes read"]}',
        '{"bad role": []}',
        '{"u": ["a\\"b"]}',
        '{"u": ["ktk_x"]}',
    ],
    ids=[
        "not-json",
        "not-an-object",
        "scopes-not-a-list",
        "space-in-scope",
        "bad-role-name",
        "quote-in-scope",
        "key-lookalike-scope",
    ],
)
def test_malformed_keyturn_roles_refuse_to_start(raw: str) -> None:
    """A role map that is not JSON, or holds a scope that would split in the token's scope claim, is refused."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings(roles=raw)
    assert "KEYTURN_ROLES" in str(caught.value)
