"""Password hashing with argon2id, always off the event loop.

Parameters follow the OWASP Password Storage Cheat Sheet (argon2id, m=19 MiB, t=2,
p=1). Hashing is CPU-bound for tens of milliseconds, so the async methods run it in
worker threads, at most ``max_concurrency`` at once: the event loop keeps serving,
and memory stays bounded (each hash holds ``memory_cost`` KiB) during a login storm.

Unknown accounts are verified against a dummy hash of the same parameters, so an
attacker cannot tell "no such e-mail" from "wrong password" by timing.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Final

import anyio
import anyio.to_thread
from argon2 import PasswordHasher as _Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from keyturn.errors import InvalidCredentials

__all__ = ["OWASP", "TEST_ONLY_CHEAP", "HashProfile", "PasswordHasher"]


@dataclass(frozen=True, slots=True)
class HashProfile:
    """argon2id cost parameters (memory in KiB)."""

    name: str
    time_cost: int
    memory_cost: int
    parallelism: int


#: The production default (OWASP: argon2id, m=19456 KiB, t=2, p=1).
OWASP: Final = HashProfile("owasp", time_cost=2, memory_cost=19456, parallelism=1)
#: For test suites only: fast and insecure. Never use it to protect a real password.
TEST_ONLY_CHEAP: Final = HashProfile("test-only-cheap", time_cost=1, memory_cost=64, parallelism=1)

PROFILES: Final = {p.name: p for p in (OWASP, TEST_ONLY_CHEAP)}


class PasswordHasher:
    """argon2id hashing and verification that fails closed, offloaded to threads."""

    def __init__(self, profile: HashProfile = OWASP, *, max_concurrency: int | None = None) -> None:
        self.profile = profile
        self._hasher = _Argon2Hasher(
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost,
            parallelism=profile.parallelism,
            type=Type.ID,
        )
        self._limiter = anyio.CapacityLimiter(max_concurrency or os.cpu_count() or 1)
        # Verified against when the account does not exist, at the same cost.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash_sync(self, password: str) -> str:
        """Hash on the calling thread: for CLIs and worker threads, never the event loop."""
        return self._hasher.hash(password)

    def _verify_sync(self, stored_hash: str | None, password: str) -> None:
        try:
            self._hasher.verify(stored_hash or self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
            raise InvalidCredentials() from exc
        if stored_hash is None:
            raise InvalidCredentials()

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``, computed in a worker thread."""
        return await anyio.to_thread.run_sync(self.hash_sync, password, limiter=self._limiter)

    async def verify(self, stored_hash: str | None, password: str) -> None:
        """Return if ``password`` matches ``stored_hash``; raise :class:`InvalidCredentials` if not.

        ``stored_hash=None`` (no such account) costs one full verification, then raises.
        """
        await anyio.to_thread.run_sync(self._verify_sync, stored_hash, password, limiter=self._limiter)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than the current profile."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
