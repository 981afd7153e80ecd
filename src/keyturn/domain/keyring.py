"""The live key ring: created on first start, rotated without logouts, shared via the store.

Every instance reads the ring from the :class:`KeyStore` (the database), so a
rotation made anywhere reaches everyone: each instance reloads at most every
``reload_interval`` seconds (2 s), and at once (rate-limited) when it meets a
``kid`` it does not know.

The ring holds one ``current`` key (it signs), one ``next`` key (published in the
JWKS before it ever signs, so resource servers' caches already hold it when a
rotation promotes it) and the ``retired`` keys. A retired key keeps verifying, and
stays in the JWKS, exactly as long as a token it signed can still be valid:
another instance may sign with it for one more reload interval, that token lives
``access_ttl``, and verifiers allow ``leeway`` — so it is dropped
``reload_interval + access_ttl + leeway`` after its retirement.

A rotation is one conditional change of the stored ring (see
:class:`~keyturn.crypto.keys.KeyChange`): when two instances rotate at once (an
operator and the schedule, say), one wins and the other adopts its key.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from keyturn.clock import Clock
from keyturn.crypto.keys import KeyChange, KeyRing, KeyState, SigningKey, generate_signing_key, hmac_signing_key
from keyturn.domain.ports import KeyStore
from keyturn.errors import ConfigurationError, ServiceUnavailable, ValidationFailed

__all__ = ["KeyManager", "KeyPolicy", "RotationHook"]

log = logging.getLogger("keyturn.keys")

#: Attempts of a compromise rotation that keeps losing races to other rotations.
_COMPROMISE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPolicy:
    algorithm: str
    access_ttl: int
    leeway: int
    hmac_secret: bytes = b""
    reload_interval: float = 2.0
    #: Floor between two reloads triggered by unknown kids (forged kids cost nothing).
    miss_reload_floor: float = 1.0
    #: Rotate automatically when the current key has signed for this long; 0 = never.
    rotation_interval: int = 0

    @property
    def retired_lifetime(self) -> float:
        """Seconds a retired key must keep verifying (see the module docstring)."""
        return self.reload_interval + self.access_ttl + self.leeway


#: Called with the key that now signs, after a rotation keyturn made on its own.
RotationHook = Callable[[SigningKey], Awaitable[None]]


class KeyManager:
    """Owns the :class:`KeyRing` of this process and keeps it in step with the store."""

    def __init__(
        self, store: KeyStore, clock: Clock, policy: KeyPolicy, *, on_automatic_rotation: RotationHook | None = None
    ) -> None:
        self._store = store
        #: Told of rotations nobody asked for (algorithm change, schedule), e.g. to audit them;
        #: explicit rotations are reported by whoever asked, who knows the actor.
        self._on_automatic_rotation = on_automatic_rotation
        self._clock = clock
        self._policy = policy
        self._ring = KeyRing(())
        self._loaded_at = float("-inf")
        self._miss_at = float("-inf")
        #: After a failed reload, nothing is retried before this time (the database is down).
        self._retry_at = float("-inf")
        self._lock = anyio.Lock()

    @property
    def ring(self) -> KeyRing:
        return self._ring

    @property
    def is_hmac(self) -> bool:
        return bool(self._policy.hmac_secret)

    async def start(self) -> KeyRing:
        """Load the ring and make it whole: a current key of the configured algorithm, and a next key.

        Seals keys stored in clear, or sealed with the key-encryption key being replaced, with
        the configured one (see :meth:`~keyturn.domain.ports.KeyStore.reseal`). Raises
        :class:`~keyturn.errors.ConfigurationError` when the stored keys cannot be opened.
        """
        if self.is_hmac:
            self._ring = KeyRing([hmac_signing_key(self._policy.hmac_secret, self._policy.algorithm)])
            return self._ring
        sealed = await self._store.reseal()
        if sealed:
            log.info("sealed signing keys with the current key-encryption key", extra={"keys": sealed})
        async with self._lock:
            ring = await self.reload()
            current = _signing_key(ring)
            if current is None:  # the first start: a key appearing is the installation, not a rotation
                await self._apply_rotation(compromised=False)
            elif current.alg != self._policy.algorithm or self._rotation_due(ring):
                await self._rotate_automatically()
            elif (upcoming := ring.next_key) is None or upcoming.alg != self._policy.algorithm:
                await self._prepare_next(ring, current)
        return self._ring

    def _rotation_due(self, ring: KeyRing) -> bool:
        current = _signing_key(ring)
        if current is None:
            return True
        interval = self._policy.rotation_interval
        return interval > 0 and self._clock.now() - current.created_at >= interval

    async def reload(self) -> KeyRing:
        """Read the ring from the store, leaving out retired keys past their drop time."""
        if self.is_hmac:
            return self._ring
        now = self._clock.now()
        keys = await self._store.load()
        self._ring = KeyRing(k for k in keys if k.drop_after is None or k.drop_after > now)
        self._loaded_at = now
        return self._ring

    async def refresh_if_stale(self) -> KeyRing:
        """Reload when the ring is older than ``reload_interval``; rotate when one is due (checked per call).

        A database outage keeps the ring already loaded (tokens still verify) and is
        retried one interval later; only a process that never loaded a ring fails.
        """
        if self.is_hmac or not self._stale():
            return self._ring
        async with self._lock:
            if not self._stale():
                return self._ring
            try:
                ring = await self.reload()
                if self._rotation_due(ring):
                    await self._rotate_automatically()
            except ServiceUnavailable as exc:
                self._keep_loaded(exc, logging.WARNING, "the database is unavailable")
            except ConfigurationError as exc:
                self._keep_loaded(exc, logging.ERROR, str(exc))
        return self._ring

    async def reload_serving(self) -> KeyRing:
        """:meth:`reload` for a running server: stored keys it cannot open leave the loaded ring as is.

        That happens while a key-encryption key is replaced across a fleet (docs/keys.md): the
        instances started with the new KEK re-seal the keys, and one still running with only the
        old KEK cannot open them. It keeps signing and verifying with the keys it holds until it
        restarts with the new KEK, rather than failing requests or stopping. Raises as
        :meth:`reload` does when no ring was ever loaded, and on a database outage.
        """
        try:
            return await self.reload()
        except ConfigurationError as exc:
            self._keep_loaded(exc, logging.ERROR, str(exc))
            return self._ring

    def _keep_loaded(self, exc: Exception, level: int, why: str) -> None:
        """After a failed reload, keep the loaded ring and retry one interval later.

        Only a process that never loaded a ring has nothing to keep: ``exc`` is raised then.
        """
        if not len(self._ring):
            raise exc
        self._retry_at = self._clock.now() + self._policy.reload_interval
        log.log(level, "key ring reload failed, keeping the loaded keys: %s", why)

    def _stale(self) -> bool:
        """Time to reload: the interval has passed, or the loaded current key is due for rotation."""
        now = self._clock.now()
        if now < self._retry_at:
            return False
        return now - self._loaded_at >= self._policy.reload_interval or self._rotation_due(self._ring)

    async def on_unknown_kid(self) -> KeyRing:
        """Reload because a token named a key we do not know, at most once per floor."""
        now = self._clock.now()
        if self.is_hmac or now - self._miss_at < self._policy.miss_reload_floor:
            return self._ring
        self._miss_at = now
        return await self.reload_serving()

    async def rotate(self, *, compromised: bool = False) -> SigningKey:
        """Promote the next key to current, retire the old current key, publish a new next key.

        ``compromised`` is for after an incident: the new current key is freshly made
        (the pre-published next key may have leaked with the rest) and every old key
        is deleted at once, so forged tokens stop verifying; access tokens they signed
        are refused too, and clients refresh — no one is logged out. Returns the key
        that now signs. Raises :class:`ValidationFailed` in HMAC mode, whose key is
        ``KEYTURN_SECRET``.
        """
        if self.is_hmac:
            raise ValidationFailed(
                "In HMAC mode the signing key is KEYTURN_SECRET: rotate it by changing the secret.",
                fields={"algorithm": "HMAC keys are not stored in the key ring"},
            )
        async with self._lock:
            return await self._rotate(compromised=compromised)

    async def _rotate_automatically(self) -> None:
        signing = await self._apply_rotation(compromised=False)
        if signing is not None and self._on_automatic_rotation is not None:
            await self._on_automatic_rotation(signing)

    async def _rotate(self, *, compromised: bool) -> SigningKey:
        signing = await self._apply_rotation(compromised=compromised)
        if signing is not None:
            return signing
        # Another instance rotated at the same moment: its key is the one everyone signs with.
        current = _signing_key(await self.reload())
        if current is None:  # pragma: no cover - a winning rotation always leaves a current key
            raise ServiceUnavailable()
        return current

    async def _apply_rotation(self, *, compromised: bool) -> SigningKey | None:
        """Rotate; the key that now signs, or ``None`` when another instance's rotation won."""
        for _ in range(_COMPROMISE_ATTEMPTS if compromised else 1):
            ring = await self.reload()
            change, signing = await self._rotation(ring, compromised=compromised)
            if await self._store.apply(change):
                await self.reload()
                log.info("signing key rotated", extra={"kid": signing.kid, "compromised": compromised})
                return signing
        return None

    async def _rotation(self, ring: KeyRing, *, compromised: bool) -> tuple[KeyChange, SigningKey]:
        now = self._clock.now()
        alg = self._policy.algorithm
        old = ring.in_state("current")
        upcoming = ring.next_key
        added = [await self._generate("next", now)]
        if not compromised and upcoming is not None and upcoming.alg == alg:
            signing = upcoming.with_state("current", since=now)
            updated = [signing]
        else:
            signing = await self._generate("current", now)
            added.insert(0, signing)
            updated = []
        if compromised:
            dropped = [k.kid for k in ring]
        else:
            retire_at = now + self._policy.retired_lifetime
            updated += [k.with_state("retired", drop_after=retire_at) for k in old]
            dropped = [k.kid for k in ring.in_state("next") if k.kid != signing.kid]
        change = KeyChange(
            expect_current=old[-1].kid if old else None,
            add=tuple(added),
            update=tuple(updated),
            delete=tuple(dropped),
            purge_before=now,
        )
        return change, signing

    async def _prepare_next(self, ring: KeyRing, current: SigningKey) -> None:
        """Publish a next key (replacing one of another algorithm) without rotating."""
        upcoming = await self._generate("next", self._clock.now())
        stale = tuple(k.kid for k in ring.in_state("next"))
        await self._store.apply(KeyChange(expect_current=current.kid, add=(upcoming,), delete=stale))
        await self.reload()

    async def _generate(self, state: KeyState, now: float) -> SigningKey:
        # An RSA key takes tens of milliseconds to generate: not on the event loop.
        make = functools.partial(generate_signing_key, self._policy.algorithm, now=now, state=state)
        return await anyio.to_thread.run_sync(make)


def _signing_key(ring: KeyRing) -> SigningKey | None:
    try:
        return ring.signing_key
    except LookupError:
        return None
