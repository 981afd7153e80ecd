"""Failed logins: the per-(account, client) lock with back-off, the per-client limit, and their resets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from keyturn.clock import FrozenClock
from keyturn.server.counters import MemoryCounters
from keyturn.server.ratelimit import MAX_LOCK, STRIKE_MEMORY
from tests.conftest import ClientFactory, SettingsFactory, assert_error, register
from tests.ratelimit.helpers import PROXY, WRONG, attempt

pytestmark = pytest.mark.anyio

ALICE = "alice@example.com"
PERIOD = 15 * 60  # the default KEYTURN_RATE_LIMIT_LOGIN is 5/15minutes
FULLWIDTH_ALICE = "\uff41\uff4c\uff49\uff43\uff45@example.com"  # NFKC folds it to alice@


@pytest.fixture
async def client(
    make_client: ClientFactory, make_settings: SettingsFactory, limits_storage: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the default limits, trusting the test client as a proxy."""
    async with make_client(make_settings(trusted_proxies=[PROXY], **limits_storage)) as c:
        await register(c, ALICE)
        yield c


async def fail(client: httpx.AsyncClient, times: int, email: str = ALICE, *, ip: str | None = None) -> None:
    for _ in range(times):
        assert_error(await attempt(client, email, WRONG, ip=ip), 401, "INVALID_CREDENTIALS")


def assert_throttled(response: httpx.Response, retry_after: int) -> None:
    assert_error(response, 429, "RATE_LIMITED")
    assert response.headers["retry-after"] == str(retry_after)


async def test_fifth_failure_locks_the_pair_for_one_period(client: httpx.AsyncClient) -> None:
    """After five failures the next attempt is 429 with Retry-After of one period."""
    await fail(client, 5)
    assert_throttled(await attempt(client, ALICE, WRONG), PERIOD)


async def test_locked_pair_refuses_the_right_password_identically(client: httpx.AsyncClient) -> None:
    """While locked, the right password gets the very same 429 as a wrong one: no oracle."""
    await fail(client, 5)
    right = await attempt(client, ALICE)
    wrong = await attempt(client, ALICE, WRONG)
    assert_throttled(right, PERIOD)
    assert right.json() == wrong.json()
    assert right.headers["retry-after"] == wrong.headers["retry-after"]


async def test_lock_ends_after_retry_after(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Waiting exactly Retry-After seconds lets the right password in; a second less does not."""
    await fail(client, 5)
    retry_after = int((await attempt(client, ALICE)).headers["retry-after"])
    clock.advance(retry_after - 1)
    assert_throttled(await attempt(client, ALICE), 1)
    clock.advance(1)
    assert (await attempt(client, ALICE)).status_code == 200


async def test_each_failure_after_a_lock_doubles_it_up_to_the_cap(
    client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """Lock durations go 15 min, 30 min, 1 h, … and stop growing at MAX_LOCK."""
    await fail(client, 5)
    expected = PERIOD
    seen = []
    while expected < MAX_LOCK:
        clock.advance(expected)
        assert_error(await attempt(client, ALICE, WRONG), 401, "INVALID_CREDENTIALS")
        expected = min(expected * 2, MAX_LOCK)
        response = await attempt(client, ALICE)
        assert_throttled(response, expected)
        seen.append(expected)
    clock.advance(MAX_LOCK)
    await fail(client, 1)
    assert_throttled(await attempt(client, ALICE), MAX_LOCK)
    assert seen[:3] == [2 * PERIOD, 4 * PERIOD, 8 * PERIOD]


async def test_other_accounts_from_the_same_client_are_not_locked(client: httpx.AsyncClient) -> None:
    """A locked (account, client) pair leaves the client's other accounts alone."""
    await register(client, "bob@example.com")
    await fail(client, 5)
    assert (await attempt(client, "bob@example.com")).status_code == 200


async def test_the_same_account_from_another_client_is_not_locked(client: httpx.AsyncClient) -> None:
    """The lock is per client: the account owner elsewhere still logs in."""
    await fail(client, 5, ip="198.51.100.66")
    assert_throttled(await attempt(client, ALICE, ip="198.51.100.66"), PERIOD)
    assert (await attempt(client, ALICE, ip="198.51.100.1")).status_code == 200


async def test_equivalent_spellings_of_an_email_share_one_limit(client: httpx.AsyncClient) -> None:
    """Case and NFKC variants of an address count as the same account."""
    for spelling in ["alice@example.com", "ALICE@example.com", FULLWIDTH_ALICE, "Alice@EXAMPLE.COM", ALICE]:
        assert_error(await attempt(client, spelling, WRONG), 401, "INVALID_CREDENTIALS")
    assert_throttled(await attempt(client, ALICE), PERIOD)


async def test_a_success_forgets_earlier_failures(client: httpx.AsyncClient) -> None:
    """Four failures, a success, four more failures: never locked."""
    await fail(client, 4)
    assert (await attempt(client, ALICE)).status_code == 200
    await fail(client, 4)
    assert (await attempt(client, ALICE)).status_code == 200


async def _counter_keys(client: httpx.AsyncClient, storage: dict[str, Any]) -> int:
    """How many rate-limit counters the server holds (in its memory, or under its Redis prefix)."""
    if "redis_url" not in storage:
        counters = client.app.state.services.rate_limits.storage  # type: ignore[attr-defined]
        assert isinstance(counters, MemoryCounters)
        return len(counters)
    redis = Redis.from_url(storage["redis_url"])
    try:
        return len([key async for key in redis.scan_iter(match=f"{storage['redis_prefix']}limits*", count=500)])
    finally:
        await redis.aclose()


async def test_successful_logins_leave_no_counters_behind(
    client: httpx.AsyncClient, limits_storage: dict[str, Any]
) -> None:
    """A stream of successful logins holds the same counters as one: memory does not grow with the login rate.

    Each success used to start a new generation of the pair's counters, leaving the old
    window's counter behind until it expired (30 minutes with the default limit).
    """
    assert (await attempt(client, ALICE)).status_code == 200
    held = await _counter_keys(client, limits_storage)
    for _ in range(12):
        assert (await attempt(client, ALICE)).status_code == 200
    assert await _counter_keys(client, limits_storage) == held
    await fail(client, 4)  # and forgetting still works after all those successes
    assert (await attempt(client, ALICE)).status_code == 200
    await fail(client, 4)
    assert (await attempt(client, ALICE)).status_code == 200


async def test_failures_slide_out_of_the_window(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """Four failures two periods ago no longer count."""
    await fail(client, 4)
    clock.advance(2 * PERIOD)
    await fail(client, 4)
    assert (await attempt(client, ALICE)).status_code == 200


async def test_back_off_is_forgotten_after_a_quiet_day(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    """STRIKE_MEMORY quiet seconds after a lock ends, failures start counting from scratch."""
    await fail(client, 5)
    clock.advance(PERIOD + STRIKE_MEMORY)
    await fail(client, 4)
    assert (await attempt(client, ALICE)).status_code == 200


async def test_concurrent_guesses_cannot_exceed_the_limit(client: httpx.AsyncClient) -> None:
    """Twenty simultaneous wrong guesses: exactly five are checked, fifteen are refused unchecked."""
    statuses: list[int] = []

    async def guess() -> None:
        statuses.append((await attempt(client, ALICE, WRONG)).status_code)

    async with anyio.create_task_group() as tasks:
        for _ in range(20):
            tasks.start_soon(guess)
    assert sorted(statuses) == [401] * 5 + [429] * 15


async def test_the_client_limit_covers_every_account(
    make_client: ClientFactory, make_settings: SettingsFactory, clock: FrozenClock, limits_storage: dict[str, Any]
) -> None:
    """KEYTURN_RATE_LIMIT_LOGIN_IP: failures across many e-mails exhaust the client, then reset."""
    settings = make_settings(rate_limit_login_ip="6/minute", trusted_proxies=[PROXY], **limits_storage)
    async with make_client(settings) as client:
        await register(client, ALICE)
        for n in range(6):
            await fail(client, 1, f"user{n}@example.com")
        # Sliding window: six hits at the start of a minute weigh 5/6 of themselves 10 s into the next.
        assert_throttled(await attempt(client, ALICE), 70)
        assert (await attempt(client, ALICE, ip="198.51.100.9")).status_code == 200
        clock.advance(69)
        assert_throttled(await attempt(client, ALICE), 1)
        clock.advance(1)
        assert (await attempt(client, ALICE)).status_code == 200


async def test_successes_do_not_count_against_the_client(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Only failures count: a client may log in successfully more often than the failure limit."""
    async with make_client(make_settings(rate_limit_login_ip="3/minute")) as client:
        await register(client, ALICE)
        for _ in range(6):
            assert (await attempt(client, ALICE)).status_code == 200


async def test_redis_outage_falls_back_to_per_instance_limits(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """With Redis unreachable, logins still work and the lock still holds (in process memory)."""
    settings = make_settings(redis_url="redis://127.0.0.1:9/0")
    async with make_client(settings) as client:
        await register(client, ALICE)
        await fail(client, 5)
        assert_throttled(await attempt(client, ALICE), PERIOD)
        assert (await attempt(client, "nobody@example.com")).status_code == 401
