"""Passwords and e-mails: length bounds before any hashing, and NFKC so one person is one account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from keyturn.crypto.passwords import PasswordHasher
from keyturn.domain.identity import MAX_PASSWORD_LENGTH
from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, app_of, assert_error, bearer, login, register

pytestmark = pytest.mark.anyio

MEGABYTE = "p" * (1 << 20)


@dataclass
class HashCalls:
    """How often the argon2 hasher was asked to work, by method."""

    calls: dict[str, int] = field(default_factory=lambda: {"hash": 0, "verify": 0})

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture
async def big_client(make_client: ClientFactory, make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose body limit (2 MiB) lets a 1 MB password reach the application."""
    async with make_client(make_settings(body_limit=2 << 20)) as client:
        yield client


@pytest.fixture
def hash_calls(big_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> HashCalls:
    """Count every call into the password hasher (wrapping it, still hashing for real)."""
    counted = HashCalls()
    hasher: PasswordHasher = app_of(big_client).state.services.hasher
    for name in ("hash", "verify"):
        original = getattr(hasher, name)

        async def counting(*args: object, _original: object = original, _name: str = name) -> object:
            counted.calls[_name] += 1
            return await _original(*args)  # type: ignore[operator]

        monkeypatch.setattr(hasher, name, counting)
    return counted


async def test_a_megabyte_password_is_refused_without_hashing(
    big_client: httpx.AsyncClient, hash_calls: HashCalls
) -> None:
    """Register, login and password change each refuse a 1 MB password with 422, and argon2 never runs."""
    await register(big_client)
    token = (await login(big_client))["access_token"]
    before = hash_calls.total
    register_big = await big_client.post("/auth/register", json={"email": "b@example.com", "password": MEGABYTE})
    login_big = await big_client.post("/auth/login", json={"email": "alice@example.com", "password": MEGABYTE})
    change_big = await big_client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": MEGABYTE}, headers=bearer(token)
    )
    for response in (register_big, login_big, change_big):
        assert_error(response, 422, "VALIDATION_ERROR")
    assert hash_calls.total == before
    assert MEGABYTE[:64] not in register_big.text + login_big.text + change_big.text


@pytest.mark.parametrize(
    "length", [MAX_PASSWORD_LENGTH + 1, 4 * MAX_PASSWORD_LENGTH + 1, 1000], ids=["just-over", "over-nfkc-cap", "1000"]
)
async def test_a_long_password_is_refused_at_registration_before_hashing(
    big_client: httpx.AsyncClient, hash_calls: HashCalls, length: int
) -> None:
    """A password over MAX_PASSWORD_LENGTH is a 422 naming the field, and costs no hash."""
    response = await big_client.post("/auth/register", json={"email": "b@example.com", "password": "x" * length})
    assert "password" in assert_error(response, 422, "VALIDATION_ERROR")["error"]["fields"]
    assert hash_calls.total == 0


async def test_the_longest_allowed_password_works(big_client: httpx.AsyncClient) -> None:
    """Exactly MAX_PASSWORD_LENGTH characters register and log in."""
    password = ("correct horse battery staple " * 10)[:MAX_PASSWORD_LENGTH]
    await register(big_client, password=password)
    await login(big_client, password=password)


FULLWIDTH = "\uff41\uff4c\uff49\uff43\uff45\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d"


@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        ("alice@example.com", FULLWIDTH),
        (FULLWIDTH, "alice@example.com"),
        ("alice@example.com", "ALICE@Example.COM"),
        ("alice@example.com", "  alice@example.com "),
    ],
    ids=["fullwidth-at-login", "fullwidth-at-registration", "case", "surrounding-space"],
)
async def test_equivalent_emails_are_one_account(client: httpx.AsyncClient, registered: str, typed: str) -> None:
    """NFKC + case folding: a fullwidth or differently cased address logs in to the same account."""
    user = await register(client, registered)
    assert user["email"] == "alice@example.com"
    assert (await login(client, typed))["user"]["id"] == user["id"]
    again = await client.post("/auth/register", json={"email": typed, "password": PASSWORD})
    assert_error(again, 409, "EMAIL_TAKEN")


@pytest.mark.parametrize(
    ("registered", "typed"),
    [
        ("caf\u00e9 au lait is hot", "cafe\u0301 au lait is hot"),
        ("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44 on a phone", "password on a phone"),
        ("\u2460\u2461\u2462 numbered things", "123 numbered things"),
    ],
    ids=["composed-vs-decomposed", "fullwidth-letters", "circled-digits"],
)
async def test_nfkc_equivalent_passwords_match(client: httpx.AsyncClient, registered: str, typed: str) -> None:
    """The same passphrase typed on two keyboards (NFKC-equal) logs in."""
    await register(client, password=registered)
    await login(client, password=typed)
