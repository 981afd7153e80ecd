"""The live key ring: created on first start, rotated without logouts, shared via the store.

Every instance reads the ring from the :class:`KeyStore` (the database), so a
rotation made anywhere reaches everyone: each instance reloads at most every
``reload_interval`` seconds, and at once (rate-limited) when it meets a ``kid`` it
does not know. A retired key keeps verifying, and stays in the JWKS, until no token
it signed can still be valid (``access_ttl + leeway`` after retirement).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from keyturn.clock import Clock
from keyturn.crypto.keys import KeyRing, SigningKey, generate_signing_key, hmac_signing_key
from keyturn.domain.ports import KeyStore

__all__ = ["KeyManager", "KeyPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPolicy:
    algorithm: str
    access_ttl: int
    leeway: int
    hmac_secret: bytes = b""
    reload_interval: float = 2.0
    #: Floor between two reloads triggered by unknown kids (forged kids cost nothing).
    miss_reload_floor: float = 1.0
    #: Rotate automatically when the current key is older than this; 0 = never.
    rotation_interval: int = 0


class KeyManager:
    """Owns the :class:`KeyRing` of this process and keeps it in step with the store."""

    def __init__(self, store: KeyStore, clock: Clock, policy: KeyPolicy) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._ring = KeyRing(())
        self._loaded_at = float("-inf")
        self._miss_at = float("-inf")
        self._lock = anyio.Lock()

    @property
    def ring(self) -> KeyRing:
        return self._ring

    @property
    def is_hmac(self) -> bool:
        return bool(self._policy.hmac_secret)

    async def start(self) -> KeyRing:
        """Load the ring; create the first key, or rotate to a newly configured algorithm."""
        if self.is_hmac:
            self._ring = KeyRing([hmac_signing_key(self._policy.hmac_secret, self._policy.algorithm)])
            return self._ring
        await self.reload()
        try:
            current = self._ring.signing_key
        except LookupError:
            current = None
        if current is None or current.alg != self._policy.algorithm or self._rotation_due(current):
            await self.rotate()
        return self._ring

    def _rotation_due(self, key: SigningKey) -> bool:
        interval = self._policy.rotation_interval
        return interval > 0 and self._clock.now() - key.created_at >= interval

    async def reload(self) -> KeyRing:
        if self.is_hmac:
            return self._ring
        now = self._clock.now()
        keys = await self._store.load()
        expired = [k.kid for k in keys if k.drop_after is not None and k.drop_after <= now]
        self._ring = KeyRing(k for k in keys if k.kid not in expired)
        self._loaded_at = now
        return self._ring

    async def refresh_if_stale(self) -> KeyRing:
        """Reload when the ring is older than ``reload_interval``; rotate when one is due."""
        if self.is_hmac or self._clock.now() - self._loaded_at < self._policy.reload_interval:
            return self._ring
        async with self._lock:
            if self._clock.now() - self._loaded_at >= self._policy.reload_interval:
                await self.reload()
                try:
                    if self._rotation_due(self._ring.signing_key):
                        await self.rotate()
                except LookupError:
                    await self.rotate()
        return self._ring

    async def on_unknown_kid(self) -> KeyRing:
        """Reload because a token named a key we do not know, at most once per floor."""
        now = self._clock.now()
        if self.is_hmac or now - self._miss_at < self._policy.miss_reload_floor:
            return self._ring
        self._miss_at = now
        return await self.reload()

    async def rotate(self) -> SigningKey:
        """Make a new current key; retire the old ones once their tokens can no longer be valid.

        Raises ``RuntimeError`` in HMAC mode, whose key is the configured secret.
        """
        if self.is_hmac:
            raise RuntimeError("in HMAC mode the key is KEYTURN_SECRET: rotate by changing it")
        now = self._clock.now()
        new = generate_signing_key(self._policy.algorithm, now=now)
        await self._store.add(new)
        drop_after = now + self._policy.access_ttl + self._policy.leeway
        for key in self._ring:
            if key.state != "retired":
                await self._store.update_state(key.kid, "retired", drop_after)
        await self.reload()
        return new
