"""Login: the token pair, the same answer for every failure, rehash on parameter change."""

from __future__ import annotations

import httpx
import pytest
from argon2 import PasswordHasher as Argon2

from keyturn.crypto.passwords import OWASP, TEST_ONLY_CHEAP, PasswordHasher
from tests.conftest import PASSWORD, ClientFactory, SettingsFactory, app_of, assert_error, login, register

pytestmark = pytest.mark.anyio


async def test_login_returns_the_contract_shape(client: httpx.AsyncClient) -> None:
    """Login answers access token, type, lifetimes, refresh token and the user."""
    user = await register(client)
    data = await login(client)
    assert set(data) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
        "scope",
        "user",
    }
    assert data["user"] == user
    assert data["refresh_expires_in"] == 14 * 86400
    assert len(data["refresh_token"]) >= 43  # 256 bits, base64url


async def test_login_normalises_the_email(client: httpx.AsyncClient) -> None:
    """The e-mail is matched after NFKC and case folding, as at registration."""
    await register(client, "erin@example.com")
    await login(client, "\uff25\uff32\uff29\uff2e@EXAMPLE.com")  # fullwidth ERIN


@pytest.mark.parametrize(
    "body",
    [
        {"email": "alice@example.com", "password": "wrong password here"},
        {"email": "nobody@example.com", "password": PASSWORD},
        {"email": "not an email", "password": PASSWORD},
        {"email": "alice@example.com", "password": ""},
    ],
    ids=["wrong-password", "unknown-email", "malformed-email", "empty-password"],
)
async def test_failures_are_indistinguishable(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    """Every credential failure is the same 401 INVALID_CREDENTIALS body."""
    await register(client)
    response = await client.post("/auth/login", json=body)
    assert assert_error(response, 401, "INVALID_CREDENTIALS") == {
        "success": False,
        "error": {"code": "INVALID_CREDENTIALS", "message": "The e-mail or password is incorrect."},
    }


async def test_unknown_email_still_costs_a_hash(client: httpx.AsyncClient) -> None:
    """An unknown e-mail is verified against a dummy hash, so it costs what a wrong password costs."""
    hasher = app_of(client).state.services.hasher
    calls: list[str | None] = []
    original = hasher._verify_sync

    def spy(stored: str | None, password: str) -> None:
        calls.append(stored)
        original(stored, password)

    hasher._verify_sync = spy
    response = await client.post("/auth/login", json={"email": "ghost@example.com", "password": PASSWORD})
    assert_error(response, 401, "INVALID_CREDENTIALS")
    assert calls == [None]


async def test_login_rehashes_when_parameters_change(
    make_client: ClientFactory, make_settings: SettingsFactory, backend: str
) -> None:
    """A hash made with older parameters is upgraded transparently at the next login."""
    async with make_client(make_settings()) as client:
        await register(client)
        old = (await app_of(client).state.services.users.by_email("alice@example.com")).password_hash
    async with make_client(make_settings(password_profile="owasp")) as client:
        await login(client)
        new = (await app_of(client).state.services.users.by_email("alice@example.com")).password_hash
    assert old != new
    assert f"m={OWASP.memory_cost},t={OWASP.time_cost},p={OWASP.parallelism}" in new
    assert not PasswordHasher(OWASP).needs_rehash(new)


def test_rehash_verdicts_agree_with_argon2_whatever_was_asked_before() -> None:
    """``needs_rehash`` remembers its answer per parameter set: it must still be argon2-cffi's.

    Asked twice over (the second round is answered from memory), each hash differing from the
    current profile in one thing argon2-cffi compares -- memory, time, lanes, salt length,
    digest length -- gets the same answer as ``check_needs_rehash``; a string that is no argon2
    hash needs one.
    """
    hasher = PasswordHasher(TEST_ONLY_CHEAP)
    base = {"memory_cost": 64, "time_cost": 1, "parallelism": 1}
    variants = [base, {**base, "memory_cost": 128}, {**base, "time_cost": 2}, {**base, "parallelism": 2}]
    hashes = [Argon2(**v).hash("pw") for v in variants]  # type: ignore[arg-type]
    hashes += [Argon2(**base, salt_len=8).hash("pw"), Argon2(**base, hash_len=16).hash("pw")]  # type: ignore[arg-type]
    expected = [Argon2(**base).check_needs_rehash(h) for h in hashes]  # type: ignore[arg-type]
    assert expected == [False, True, True, True, True, True]
    for _ in range(2):
        assert [hasher.needs_rehash(h) for h in hashes] == expected
        assert hasher.needs_rehash("$argon2id$v=19$m=64,t=1,p=1$not-base64$")
        assert hasher.needs_rehash("plaintext")


async def test_hashing_runs_off_the_event_loop(client: httpx.AsyncClient) -> None:
    """argon2 runs in a worker thread, never on the thread running the event loop."""
    import threading  # noqa: PLC0415

    hasher = app_of(client).state.services.hasher
    threads: list[int] = []
    original = hasher.hash_sync

    def spy(password: str) -> str:
        threads.append(threading.get_ident())
        return str(original(password))

    hasher.hash_sync = spy
    await register(client)
    assert threads
    assert threading.get_ident() not in threads
