"""Rate limits and the login back-off, on the ``limits`` library's storage, timed by the injected clock.

Counters live in process memory by default (:class:`~keyturn.server.counters.MemoryCounters`,
not ``limits``' memory storage, which rescans every key on every hit), in ``limits``' Redis
storage when ``KEYTURN_REDIS_URL`` is set (so every instance shares them; while Redis is down,
each instance counts in its own memory, so the limits keep holding). ``limits``' own
strategies read the wall clock inside the storage (and Redis), so they cannot be driven
by keyturn's :class:`~keyturn.clock.Clock`; here the *clock* picks the window a hit
falls in (it is part of the key) and the storage only counts, atomically. The estimate
is ``limits``' sliding window counter: the current window's count plus the previous
window's, weighted by how much of it still overlaps the sliding period.

Limits (CONTRACT.md §5, rates in ``limits``' ``N/period`` notation):

* register, refresh: every request from a client counts; over the limit → 429.
* login, per client: failed logins from one client; over the limit → 429 for every
  login from it.
* login, per (account, client): failed logins for one e-mail from one client. When
  the N-th failure lands inside the window, the pair is *locked* for one period;
  after a lock, each further failure locks it again for twice as long as the last
  lock, up to :data:`MAX_LOCK`. A locked pair is refused *before* the password is
  looked at, so the right password gets the same 429 as a wrong one (no oracle), and
  other e-mails from the same client are unaffected. A successful login from that
  client forgets the pair's failures and locks; so do :data:`STRIKE_MEMORY` quiet
  seconds after the last lock ends.

Each attempt reserves its slot *before* the password is checked (an atomic
increment) and gives it back when the login succeeds or fails for a reason that is not
the password: many concurrent guesses cannot slip past a limit together.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from limits import parse as parse_rate
from limits.aio.storage import Storage
from limits.errors import StorageError
from limits.storage import storage_from_string

from keyturn.clock import Clock
from keyturn.domain.identity import normalise_email
from keyturn.errors import RateLimited, ServiceUnavailable, ValidationFailed
from keyturn.server.counters import MemoryCounters
from keyturn.settings import Settings

if TYPE_CHECKING:  # imported where used: a server without KEYTURN_REDIS_URL never loads redis (~5 MiB)
    from redis.asyncio import ConnectionPool

__all__ = [
    "MAX_LOCK",
    "STRIKE_MEMORY",
    "CounterStorage",
    "LimitExceeded",
    "LoginAttempt",
    "LoginRefused",
    "LoginThrottle",
    "Rate",
    "RateLimits",
    "Throttled",
    "WindowLimit",
    "counter_storage",
    "lock_seconds",
    "seconds_until_free",
]

T = TypeVar("T")

#: The longest a login back-off lock lasts.
MAX_LOCK: Final = 24 * 3600
#: Quiet seconds after a lock ends before the pair's back-off is forgotten.
STRIKE_MEMORY: Final = 24 * 3600
#: Real seconds the storage keeps a back-off's counters (garbage collection only).
_STRIKE_TTL: Final = 7 * 24 * 3600
#: Real seconds a window's counter outlives its window (slow requests give slots back late).
_WINDOW_SLACK: Final = 300
#: Tolerance of the float comparison of an estimate with its limit.
_EPSILON: Final = 1e-9
KEY_PREFIX: Final = "keyturn:limits"
#: Seconds a Redis command may take before Redis counts as down (it must never stall a login).
REDIS_TIMEOUT: Final = 0.5
#: Seconds the in-memory stand-in serves after Redis failed, before Redis is tried again.
FALLBACK_SECONDS: Final = 5.0

log = logging.getLogger("keyturn.ratelimit")


@dataclass(frozen=True, slots=True)
class Rate:
    """``amount`` hits per ``period`` seconds."""

    amount: int
    period: int

    @classmethod
    def parse(cls, notation: str) -> Rate:
        """From ``limits``' notation (``5/15minutes``, ``120/minute``); raise ValueError if malformed."""
        item = parse_rate(notation)
        return cls(int(item.amount), int(item.get_expiry()))


def _async_redis_uri(url: str) -> str:
    """``limits``' async scheme for a plain Redis URL (``redis://``, ``rediss://``, ``unix://``)."""
    if url.startswith("unix://"):
        return "async+redis+unix://" + url.removeprefix("unix://")
    return url if url.startswith("async+") else "async+" + url


class CounterStorage(Protocol):
    """What the limits need of a storage: ``limits``' Redis storage, or :class:`MemoryCounters`."""

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...

    async def get(self, key: str) -> int: ...


def counter_storage(redis_url: str | None, *, prefix: str = KEY_PREFIX) -> tuple[CounterStorage, ConnectionPool | None]:
    """Redis (via redis-py, short timeouts, a pool the caller closes) when a URL is given, else memory."""
    if not redis_url:
        return MemoryCounters(), None
    from redis.asyncio import ConnectionPool  # noqa: PLC0415 - only with Redis configured

    pool = ConnectionPool.from_url(redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
    # Passed through to redis-py's client (limits types its options as scalars only).
    client_options: dict[str, Any] = {"connection_pool": pool}
    storage = storage_from_string(
        _async_redis_uri(redis_url), implementation="redispy", key_prefix=prefix, wrap_exceptions=True, **client_options
    )
    if not isinstance(storage, Storage):  # pragma: no cover - the async+ schemes always give async storages
        raise TypeError("expected an async limits storage")
    return storage, pool


class _Counters:
    """The storage's counters; while a shared storage (Redis) fails, process memory stands in.

    Falling back keeps every limit enforced — per instance rather than fleet-wide — instead
    of refusing all logins (fail closed) or none (fail open) while Redis is away. After a
    failure, Redis is tried again :data:`FALLBACK_SECONDS` later.
    """

    def __init__(self, storage: CounterStorage) -> None:
        self.storage = storage
        self._fallback = MemoryCounters() if not isinstance(storage, MemoryCounters) else None
        self._down_until = 0.0

    def _active(self) -> CounterStorage:
        if self._fallback is not None and time.monotonic() < self._down_until:
            return self._fallback
        return self.storage

    async def _call(self, work: Callable[[CounterStorage], Awaitable[T]]) -> T:
        storage = self._active()
        try:
            return await work(storage)
        except (StorageError, OSError, TimeoutError) as exc:
            if self._fallback is None or storage is self._fallback:
                raise ServiceUnavailable() from exc
            log.warning("rate-limit storage unreachable; limits are per instance for %ss", FALLBACK_SECONDS)
            self._down_until = time.monotonic() + FALLBACK_SECONDS
            return await work(self._fallback)

    async def add(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` (may be negative) and return the new value; a new key lives ``expiry`` s."""
        return await self._call(lambda storage: storage.incr(key, expiry, amount))

    async def get(self, key: str) -> int:
        return await self._call(lambda storage: storage.get(key))


class LimitExceeded(RateLimited):
    """RATE_LIMITED, naming the ``limit`` that refused (for the metrics and the audit trail)."""

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(retry_after=retry_after)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Slot:
    """A hit counted in a window, so it can be given back."""

    key: str
    expiry: int


def seconds_until_free(rate: Rate, prev: int, cur: int, elapsed: float) -> float:
    """How long until one more hit fits, with ``prev``/``cur`` hits in the previous/current window.

    The estimate is ``prev * (period - elapsed) / period + cur``; one more hit fits when
    it is at most ``amount - 1``. It shrinks as the previous window slides out, and drops
    to the current count when the next window starts.
    """
    period, room = rate.period, rate.amount - 1
    left = period - elapsed
    if cur <= room:
        return 0.0 if prev == 0 else max(0.0, left - period * (room - cur) / prev)
    return left + period * (1 - room / cur)


class WindowLimit:
    """One limit: at most ``rate.amount`` hits per ``rate.period`` seconds per identity."""

    def __init__(self, counters: _Counters, clock: Clock, rate: Rate, name: str) -> None:
        self._counters = counters
        self._clock = clock
        self.rate = rate
        self._name = name
        self._expiry = 2 * rate.period + _WINDOW_SLACK

    def _window(self, identity: str) -> tuple[str, str, float]:
        """(current key, previous key, seconds into the current window) at the clock's now."""
        now, period = self._clock.now(), self.rate.period
        index = math.floor(now / period)
        base = f"{self._name}/{identity}/"
        return f"{base}{index}", f"{base}{index - 1}", now - index * period

    async def take(self, identity: str) -> Slot:
        """Count a hit; raise :class:`RateLimited` (counting nothing) if it does not fit."""
        current, previous, elapsed = self._window(identity)
        count = await self._counters.add(current, self._expiry)
        before = await self._counters.get(previous)
        weight = (self.rate.period - elapsed) / self.rate.period
        if before * weight + count > self.rate.amount + _EPSILON:
            await self._counters.add(current, self._expiry, -1)
            wait = seconds_until_free(self.rate, before, count - 1, elapsed)
            raise LimitExceeded(self._name, math.ceil(wait))
        return Slot(current, self._expiry)

    async def give_back(self, slot: Slot) -> None:
        """Uncount a hit taken by :meth:`take` (it did not count against the limit after all)."""
        await self._counters.add(slot.key, slot.expiry, -1)

    async def estimate(self, identity: str) -> float:
        """The sliding estimate of hits in the last period."""
        current, previous, elapsed = self._window(identity)
        weight = (self.rate.period - elapsed) / self.rate.period
        return await self._counters.get(previous) * weight + await self._counters.get(current)


@dataclass(frozen=True, slots=True)
class Throttled:
    """Why a login was refused, for the audit trail: which limit, on whom, for how long."""

    scope: str
    identity: str
    retry_after: int
    strike: int = 0


class LoginRefused(LimitExceeded):
    """A login refused by the throttle; ``throttled`` says which limit and for how long."""

    def __init__(self, throttled: Throttled) -> None:
        super().__init__(f"login-{throttled.scope}", throttled.retry_after)
        self.throttled = throttled


@dataclass(frozen=True, slots=True)
class Lock:
    """A back-off lock just imposed on an (account, client) pair."""

    strike: int
    seconds: int
    until: int


def pair_identity(email: str, client_ip: str | None) -> str:
    """A short, stable key for (account, client): the e-mail normalised as at login, and the IP.

    Hashed, which keeps attempted e-mails out of the (possibly shared) counter storage.
    """
    try:
        account = normalise_email(email)
    except ValidationFailed:
        account = unicodedata.normalize("NFKC", email[:1024]).strip().casefold()
    return hashlib.sha256(f"{account}\0{client_ip or '-'}".encode()).hexdigest()[:32]


def lock_seconds(period: int, strike: int) -> int:
    """The ``strike``-th lock: one ``period``, doubled per strike, capped at :data:`MAX_LOCK`."""
    return int(min(period * 2 ** min(strike - 1, 40), MAX_LOCK))


class LoginThrottle:
    """The per-(account, client) limit with growing back-off, and the per-client limit."""

    def __init__(self, counters: _Counters, clock: Clock, *, pair_rate: Rate, client_rate: Rate) -> None:
        self._counters = counters
        self._clock = clock
        self.pair_rate = pair_rate
        self._pair = WindowLimit(counters, clock, pair_rate, "login-pair")
        self._client = WindowLimit(counters, clock, client_rate, "login-ip")

    async def _generation(self, pair: str) -> str:
        return f"{pair}.{await self._counters.get(f'login-gen/{pair}')}"

    async def forget(self, pair: str) -> None:
        """Start the pair afresh: a new generation, under which no failure or lock exists."""
        await self._counters.add(f"login-gen/{pair}", _STRIKE_TTL)

    async def _strike(self, generation: str) -> tuple[int, int]:
        """(locks imposed so far, epoch second the last one ends) in this generation."""
        strikes = await self._counters.get(f"login-strikes/{generation}")
        if strikes == 0:
            return 0, 0
        return strikes, await self._counters.get(f"login-lock/{generation}/{strikes}")

    async def admit(self, email: str, client_ip: str | None) -> LoginAttempt:
        """Reserve a login attempt; raise :class:`LoginRefused` (a 429) if it may not be made."""
        pair = pair_identity(email, client_ip)
        generation = await self._generation(pair)
        strikes, until = await self._strike(generation)
        now = self._clock.now()
        if strikes and now < until:
            raise LoginRefused(Throttled("account", pair, math.ceil(until - now), strikes))
        if strikes and now >= until + STRIKE_MEMORY:
            await self.forget(pair)
            generation, strikes = await self._generation(pair), 0
        client_slot = await self._take(self._client, client_ip or "-", "client")
        try:
            pair_slot = await self._reserve(pair, generation, strikes)
        except BaseException:
            await self._client.give_back(client_slot)
            raise
        return LoginAttempt(
            throttle=self,
            pair=pair,
            generation=generation,
            strikes=strikes,
            client_slot=client_slot,
            pair_slot=pair_slot,
        )

    async def _take(self, limit: WindowLimit, identity: str, scope: str, *, reported: str | None = None) -> Slot:
        try:
            return await limit.take(identity)
        except RateLimited as exc:
            raise LoginRefused(Throttled(scope, reported or identity, exc.retry_after)) from None

    async def _reserve(self, pair: str, generation: str, strikes: int) -> Slot:
        """A slot in the pair's window; after a lock, the single attempt that lock allows."""
        if strikes == 0:
            return await self._take(self._pair, generation, "account", reported=pair)
        key = f"login-after/{generation}/{strikes}"
        if await self._counters.add(key, _STRIKE_TTL) > 1:
            await self._counters.add(key, _STRIKE_TTL, -1)
            raise LoginRefused(Throttled("account", pair, 1, strikes))
        return Slot(key, _STRIKE_TTL)

    async def impose(self, generation: str, strikes: int) -> Lock | None:
        """Lock the pair for its next strike, unless a concurrent failure already did."""
        strike = strikes + 1
        if await self._counters.add(f"login-strike-claim/{generation}/{strike}", _STRIKE_TTL) != 1:
            return None
        seconds = lock_seconds(self.pair_rate.period, strike)
        until = math.ceil(self._clock.now()) + seconds
        # The lock's end is written before the strike count that points at it.
        await self._counters.add(f"login-lock/{generation}/{strike}", _STRIKE_TTL, until)
        await self._counters.add(f"login-strikes/{generation}", _STRIKE_TTL)
        return Lock(strike, seconds, until)

    async def has_history(self, generation: str) -> bool:
        """True when the pair's window counts any attempt (failed, or still in flight)."""
        return await self._pair.estimate(generation) > _EPSILON

    async def used_last_slot(self, generation: str) -> bool:
        """True when the pair's window holds as many failures as the limit allows."""
        return await self._pair.estimate(generation) > self.pair_rate.amount - 1 + _EPSILON

    async def give_back(self, *slots: Slot) -> None:
        for slot in slots:
            await self._counters.add(slot.key, slot.expiry, -1)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginAttempt:
    """One admitted login; report exactly one outcome."""

    throttle: LoginThrottle
    pair: str
    generation: str
    strikes: int
    client_slot: Slot
    pair_slot: Slot

    async def succeeded(self) -> None:
        """The password was right: no failure counts, and the pair's history is forgotten.

        This attempt's slots are given back; a new generation (which forgets failures and
        locks at once) is started only when something is left to forget -- strikes, or
        attempts still counted in the window (failures, or a concurrent attempt in flight).
        Starting one on every success left the old generation's window counter behind until
        it expired, 30 minutes later with the default limit: one more key per successful login,
        held in the server's memory without Redis -- memory in proportion to the login rate.
        """
        await self.throttle.give_back(self.client_slot, self.pair_slot)
        if self.strikes or await self.throttle.has_history(self.generation):
            await self.throttle.forget(self.pair)

    async def failed(self) -> Lock | None:
        """The password was wrong: the slots stay counted; return the lock this imposed, if any."""
        if self.strikes or await self.throttle.used_last_slot(self.generation):
            return await self.throttle.impose(self.generation, self.strikes)
        return None

    async def abandoned(self) -> None:
        """Neither outcome (the database was down, the client went away): uncount the attempt."""
        await self.throttle.give_back(self.client_slot, self.pair_slot)


class RateLimits:
    """Every limit of the server, over one storage."""

    def __init__(
        self, storage: CounterStorage, clock: Clock, settings: Settings, *, pool: ConnectionPool | None = None
    ) -> None:
        counters = _Counters(storage)
        self.storage = storage
        self._pool = pool
        self._counters = counters
        self._clock = clock
        self.login = LoginThrottle(
            counters,
            clock,
            pair_rate=Rate.parse(settings.rate_limit_login),
            client_rate=Rate.parse(settings.rate_limit_login_ip),
        )
        self.register = WindowLimit(counters, clock, Rate.parse(settings.rate_limit_register), "register")
        self.refresh = WindowLimit(counters, clock, Rate.parse(settings.rate_limit_refresh), "refresh")
        self.token = WindowLimit(counters, clock, Rate.parse(settings.rate_limit_token), "token")

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock) -> RateLimits:
        """Limits over Redis when ``KEYTURN_REDIS_URL`` is set, else over process memory (no I/O yet)."""
        storage, pool = counter_storage(settings.redis_url, prefix=settings.redis_prefix + "limits")
        return cls(storage, clock, settings, pool=pool)

    async def close(self) -> None:
        """Close the Redis connections, if any."""
        if self._pool is not None:
            await self._pool.aclose()

    async def once_per(self, key: str, seconds: int) -> bool:
        """True for the first call with ``key`` in each ``seconds``-long window of the clock.

        Keeps floods of refused requests from turning into floods of audit records.
        """
        window = math.floor(self._clock.now() / seconds)
        return await self._counters.add(f"once/{key}/{window}", 2 * seconds) == 1
