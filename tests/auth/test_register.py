"""Registration: normalised e-mails, the NIST password policy, and clear validation errors."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import PASSWORD, ClientFactory, assert_error, register

pytestmark = pytest.mark.anyio


async def test_email_is_normalised_and_duplicates_refused(make_client: ClientFactory) -> None:
    """Case and Unicode compatibility forms of one address are the same account (EMAIL_TAKEN)."""
    async with make_client() as client:
        user = await register(client, "Bob@Example.com")
        assert user["email"] == "bob@example.com"
        fullwidth = "\uff42\uff4f\uff42@example.com"
        for variant in ("BOB@EXAMPLE.COM", " bob@example.com ", fullwidth):
            again = await client.post("/auth/register", json={"email": variant, "password": PASSWORD})
            assert_error(again, 409, "EMAIL_TAKEN")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@b", "password": PASSWORD}, "email"),
        ({"email": "alice@example.com", "password": "short"}, "password"),
        ({"email": "alice@example.com", "password": "x" * 129}, "password"),
        ({"email": "alice@example.com", "password": "password123"}, "password"),
        ({"email": "alice@example.com", "password": "qwertyuiop"}, "password"),
        ({"email": "alice@example.com", "password": "alice@example.com"}, "password"),
        ({"email": "alice@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
        ({"email": "alice@example.com", "password": PASSWORD, "admin": True}, "admin"),
        ({"email": "alice@example.com", "password": PASSWORD, "name": "n" * 201}, "name"),
        ({"email": 42, "password": PASSWORD}, "email"),
    ],
    ids=[
        "no-at",
        "no-domain-dot",
        "too-short",
        "too-long",
        "breached",
        "keyboard-walk",
        "is-email",
        "missing-password",
        "missing-email",
        "unknown-field",
        "long-name",
        "email-not-string",
    ],
)
async def test_invalid_registrations_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    """Each invalid registration is a 422 whose `fields` names the culprit."""
    response = await client.post("/auth/register", json=body)
    error = assert_error(response, 422, "VALIDATION_ERROR")["error"]
    assert field in error["fields"], error
    assert PASSWORD not in response.text


async def test_long_passphrases_and_unicode_are_welcome(client: httpx.AsyncClient) -> None:
    """NIST: long passphrases with spaces and any Unicode are accepted."""
    await register(client, "carol@example.com", "ein langer Satz mit Umlauten äöü und 🔑 " * 2)


async def test_response_never_contains_the_hash(client: httpx.AsyncClient) -> None:
    """No endpoint returns a password or its hash."""
    response = await client.post("/auth/register", json={"email": "dan@example.com", "password": PASSWORD})
    assert "argon2" not in response.text
    assert PASSWORD not in response.text
