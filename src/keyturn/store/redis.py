"""Redis: what must be fleet-wide and fast — revocations and the key-ring change signal.

The database stays the truth; Redis only makes changes travel fast between instances.

* A revocation is committed to the database first, then mirrored to Redis
  (``SET {prefix}rev:{sid}`` until it lapses, for edge verifiers that want it) and
  announced on ``{prefix}revocations``. Every instance adds announced revocations to an
  in-memory replica of the live ones, so checking a request costs no I/O at all.
* A missed announcement (Redis down, or unreachable from the revoking instance only)
  must never make a revoked token valid. So each instance also re-reads the recent
  revocations from the database every ``sync_interval``: the announcement is the
  accelerator, the poll is the guarantee. A replica not synced within ``trust_window``
  (database slow or down) is not trusted: ``is_revoked`` then asks the database per
  request, exactly like :class:`~keyturn.store.sql.SqlRevocationStore`.
* A key-ring change (a rotation, applied by the key store) is announced on ``{prefix}keys``;
  every instance reloads its ring from the database at once. The periodic reload of
  :class:`~keyturn.domain.keyring.KeyManager` stays as the safety net.

Redis errors never reach a client: they mark the link down (``/readyz`` reports it)
and the instance carries on from the database until a background ping brings it back.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import anyio
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from sqlalchemy import select

from keyturn.clock import Clock
from keyturn.crypto.keys import KeyChange, SigningKey
from keyturn.domain.ports import KeyStore
from keyturn.errors import KeyturnError
from keyturn.store.sql import Database, SqlRevocationStore
from keyturn.store.tables import revocations

__all__ = ["Fleet", "RedisLink", "ReplicatedRevocations", "SignallingKeyStore"]

log = logging.getLogger("keyturn.redis")

#: What a failing Redis raises: its own errors, socket errors and timeouts.
REDIS_ERRORS: Final = (RedisError, OSError)
#: Seconds a Redis command may take before Redis counts as down (it must never stall requests).
REDIS_TIMEOUT: Final = 0.5
#: Seconds between health pings, and between reconnection attempts of the subscriber.
HEALTH_INTERVAL: Final = 1.0
#: How far a writer's clock (plus its commit delay) may lag a reader's before a poll could miss
#: its revocation. Instances are expected to run NTP; the token leeway assumes the same.
CLOCK_MARGIN: Final = 10.0
#: Longest session id accepted from an announcement (the column is 64 characters).
MAX_SID: Final = 64
#: Seconds between sweeps of lapsed entries out of the replica.
SWEEP_INTERVAL: Final = 60.0


class RedisLink:
    """One Redis client with a key prefix and a health flag.

    Commands time out after :data:`REDIS_TIMEOUT` without retries, so a dead or
    black-holed Redis costs a request at most that once: afterwards the flag is down
    and callers skip Redis until :meth:`ping` succeeds again.
    """

    def __init__(self, url: str, *, prefix: str, timeout: float = REDIS_TIMEOUT) -> None:
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self.prefix = prefix
        self._up = False

    @property
    def up(self) -> bool:
        """Whether the last command (or ping) reached Redis."""
        return self._up

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def mark_up(self) -> bool:
        """Record a success; return True when this ends an outage."""
        recovered = not self._up
        if recovered:
            log.info("redis reachable")
        self._up = True
        return recovered

    def mark_down(self, exc: BaseException) -> None:
        if self._up:
            log.warning("redis unreachable; serving from the database", extra={"error": type(exc).__name__})
        self._up = False

    async def ping(self) -> bool:
        """Ping Redis, update the flag, and return whether it answered."""
        try:
            await self.client.ping()
        except REDIS_ERRORS as exc:
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    async def close(self) -> None:
        await self.client.aclose()


class ReplicatedRevocations:
    """The :class:`~keyturn.domain.ports.RevocationStore` of an instance in a fleet.

    Writes go to the database (the truth), then to Redis. Reads are answered from
    the in-memory replica while it is fresh; see the module docstring for why a
    missed announcement cannot make a revoked token valid.
    """

    def __init__(
        self,
        db: Database,
        link: RedisLink,
        clock: Clock,
        *,
        horizon: float,
        sync_interval: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._truth = SqlRevocationStore(db)
        self._link = link
        self._clock = clock
        self._horizon = horizon
        self.sync_interval = sync_interval
        self._trust_window = max(1.0, 2 * sync_interval)
        self._monotonic = monotonic
        self._live: dict[str, float] = {}
        self._synced_at = -math.inf
        self._since: float | None = None
        self._swept_at = -math.inf

    @property
    def channel(self) -> str:
        return self._link.key("revocations")

    def fresh(self) -> bool:
        """Whether the replica was synced with the database recently enough to answer "not revoked"."""
        return self._monotonic() - self._synced_at <= self._trust_window

    async def revoke(self, session_ids: Sequence[str], until: float) -> None:
        """Commit to the database (raising ServiceUnavailable if it is down), then tell the fleet.

        ``until`` is raised to at least ``now + horizon`` so every row lands where the
        other instances' polls look for it, whatever the caller asked for; a revocation
        that outlives its tokens is harmless.
        """
        ids = list(session_ids)
        until = max(until, self._clock.now() + self._horizon)
        await self._truth.revoke(ids, until)
        self.remember(ids, until)
        await self._announce(ids, until)

    async def is_revoked(self, session_id: str) -> bool:
        if session_id in self._live:
            return True
        if self.fresh():
            return False
        return await self._truth.is_revoked(session_id)

    async def purge(self, now: float) -> int:
        self._sweep(now)
        return await self._truth.purge(now)

    def remember(self, session_ids: Iterable[str], until: float) -> None:
        for sid in session_ids:
            self._live[sid] = max(until, self._live.get(sid, until))

    def on_message(self, data: str) -> None:
        """Add an announced revocation to the replica; malformed messages are ignored."""
        try:
            message = json.loads(data)
            sids, until = message["sids"], float(message["until"])
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a malformed revocation announcement")
            return
        if isinstance(sids, list) and all(isinstance(s, str) and 0 < len(s) <= MAX_SID for s in sids):
            self.remember(sids, until)

    async def sync(self) -> int:
        """Merge the revocations committed since the last sync; return how many rows were read.

        The first sync reads every live revocation. Later ones read those expiring
        after ``previous sync time + horizon - CLOCK_MARGIN``: every revocation written
        since then expires after that, because :meth:`revoke` writes ``until >= now + horizon``.
        Raises ServiceUnavailable when the database is down (the replica then goes stale).
        """
        started = self._monotonic()
        now = self._clock.now()
        since = now if self._since is None else self._since
        query = select(revocations.c.session_id, revocations.c.expires_at).where(revocations.c.expires_at > since)
        async with self._db.transaction() as conn:
            rows = list(await conn.execute(query))
        for row in rows:
            self.remember([row.session_id], row.expires_at)
        self._since = now + self._horizon - CLOCK_MARGIN
        self._synced_at = started
        if started - self._swept_at >= SWEEP_INTERVAL:
            self._sweep(now)
            self._swept_at = started
        return len(rows)

    async def sync_forever(self) -> None:
        """Keep the replica within ``sync_interval`` of the database.

        A failing sync only lets the replica go stale, which sends lookups to the
        database: it must never end the loop (and with it the server).
        """
        while True:
            try:
                await self.sync()
            except KeyturnError:
                log.warning("revocation sync skipped: database unavailable")
            except Exception:
                log.exception("revocation sync failed")
            await anyio.sleep(self.sync_interval)

    async def mirror_all(self) -> None:
        """Copy the replica into Redis (after an outage, edge verifiers may have missed some)."""
        now = self._clock.now()
        live = [(sid, until) for sid, until in self._live.items() if until > now]
        if live:
            await self._write(live, announce=None)

    def _sweep(self, now: float) -> None:
        self._live = {sid: until for sid, until in self._live.items() if until > now}

    async def _announce(self, session_ids: list[str], until: float) -> None:
        if not self._link.up:
            return  # the database poll carries it; the health loop re-mirrors after the outage
        message = json.dumps({"sids": session_ids, "until": until})
        await self._write([(sid, until) for sid in session_ids], announce=message)

    async def _write(self, entries: list[tuple[str, float]], *, announce: str | None) -> None:
        try:
            async with self._link.client.pipeline(transaction=False) as pipe:
                for sid, until in entries:
                    pipe.set(self._link.key(f"rev:{sid}"), "1", exat=math.ceil(until))
                if announce is not None:
                    pipe.publish(self.channel, announce)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._link.mark_down(exc)


class SignallingKeyStore:
    """A :class:`~keyturn.domain.ports.KeyStore` that announces every applied change to the fleet."""

    def __init__(self, inner: KeyStore, announce: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._announce = announce

    async def load(self) -> list[SigningKey]:
        return await self._inner.load()

    async def apply(self, change: KeyChange) -> bool:
        applied = await self._inner.apply(change)
        if applied:
            await self._announce()
        return applied

    async def reseal(self) -> int:
        return await self._inner.reseal()


KeysListener = Callable[[], Awaitable[Any]]


class Fleet:
    """The Redis side of one instance: the replica, the key-ring signal and the health of the link.

    :meth:`start` runs before serving; :meth:`run` holds the background loops
    (subscriber, database poll, health ping) for the lifetime of the app.
    """

    def __init__(self, link: RedisLink, revocations: ReplicatedRevocations) -> None:
        self.link = link
        self.revocations = revocations
        self._keys_listeners: list[KeysListener] = []

    @property
    def keys_channel(self) -> str:
        return self.link.key("keys")

    def signalling(self, store: KeyStore) -> SignallingKeyStore:
        """Wrap ``store`` so that key-ring changes are announced."""
        return SignallingKeyStore(store, self.announce_keys)

    def on_keys_changed(self, listener: KeysListener) -> None:
        self._keys_listeners.append(listener)

    def health(self) -> str:
        return "ok" if self.link.up else "down"

    async def announce_keys(self) -> None:
        if not self.link.up:
            return
        try:
            await self.link.client.publish(self.keys_channel, "changed")
        except REDIS_ERRORS as exc:
            self.link.mark_down(exc)

    async def start(self) -> None:
        """Ping Redis and load the live revocations (the database must answer)."""
        await self.link.ping()
        await self.revocations.sync()

    async def run(self) -> None:
        """The background loops; cancelled with the app's task group."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.revocations.sync_forever)
            tasks.start_soon(self._listen_forever)
            tasks.start_soon(self._watch_forever)

    async def close(self) -> None:
        await self.link.close()

    async def _watch_forever(self) -> None:
        while True:
            await anyio.sleep(HEALTH_INTERVAL)
            was_up = self.link.up
            if await self.link.ping() and not was_up:
                await self.revocations.mirror_all()

    async def _listen_once(self) -> None:
        pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
        try:
            await self._listen(pubsub)
        finally:
            with anyio.CancelScope(shield=True):
                await _close_quietly(pubsub)

    async def _listen_forever(self) -> None:
        """Subscribe, and subscribe again after any failure: a lost subscriber only slows news down."""
        while True:
            try:
                await self._listen_once()
            except REDIS_ERRORS as exc:
                self.link.mark_down(exc)
            except Exception:
                log.exception("revocation subscriber failed")
            await anyio.sleep(HEALTH_INTERVAL)

    async def _listen(self, pubsub: PubSub) -> None:
        await pubsub.subscribe(self.revocations.channel, self.keys_channel)
        # Whatever was announced while we were not listening is in the database.
        await self._keys_changed()
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=HEALTH_INTERVAL)
            if message is None or message.get("type") != "message":
                continue
            if message["channel"] == self.keys_channel:
                await self._keys_changed()
            else:
                self.revocations.on_message(str(message["data"]))

    async def _keys_changed(self) -> None:
        for listener in self._keys_listeners:
            try:
                await listener()
            except KeyturnError:
                log.warning("key ring reload skipped: database unavailable")


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()
    except REDIS_ERRORS:
        log.debug("pubsub close failed", exc_info=True)
