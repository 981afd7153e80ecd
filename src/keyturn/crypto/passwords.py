"""Password hashing with argon2id, always off the event loop.

Parameters follow the OWASP Password Storage Cheat Sheet: argon2id, m=7 MiB, t=5, p=1,
the lowest-memory of its five settings of equal strength (and Keycloak's default), so
that each concurrent hash holds 7 MiB rather than 19 (docs/performance.md). Hashing is
CPU-bound for tens of milliseconds, so the async methods run it on
the hasher's own ``max_concurrency`` worker threads (default: one per core): the event
loop keeps serving, and memory stays bounded during a login storm -- each hash holds
``memory_cost`` KiB, and the same few threads always hold them (see
:class:`PasswordHasher`). docs/performance.md has the measurements.

Unknown accounts are verified against a dummy hash of the same parameters, so an
attacker cannot tell "no such e-mail" from "wrong password" by timing. The dummy is
made by the process's first verification, whichever account it is for, so that first
login costs one hash more either way, and a server that never checks a password (a
refresh-only workload, a CLI) never holds ``memory_cost`` for it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

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


#: The production default: OWASP's argon2id m=7168 KiB, t=5, p=1 -- rated equal to its m=19 MiB,
#: t=2 and chosen for memory: a login storm holds one block per hashing thread. Hashes made with
#: other parameters still verify, and are upgraded on the next successful login.
OWASP: Final = HashProfile("owasp", time_cost=5, memory_cost=7168, parallelism=1)
#: For test suites only: fast and insecure. Never use it to protect a real password.
TEST_ONLY_CHEAP: Final = HashProfile("test-only-cheap", time_cost=1, memory_cost=64, parallelism=1)

PROFILES: Final = {p.name: p for p in (OWASP, TEST_ONLY_CHEAP)}
#: Parameter sets whose :meth:`PasswordHasher.needs_rehash` answer is remembered.
_REHASH_VERDICTS: Final = 64


class PasswordHasher:
    """argon2id hashing and verification that fails closed, offloaded to dedicated threads.

    Dedicated, not the event loop's shared thread pool: glibc keeps the ``memory_cost``
    block a thread freed in that thread's malloc arena, so hashes spread over a shared
    pool's dozens of threads leave one block behind per thread that ever hashed (measured
    under a login storm: 213-303 MiB peak RSS, against 155 MiB on ``max_concurrency``
    dedicated threads). At most ``max_concurrency`` hashes run at once; the rest queue.
    """

    def __init__(self, profile: HashProfile = OWASP, *, max_concurrency: int | None = None) -> None:
        self.profile = profile
        self._hasher = _Argon2Hasher(
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost,
            parallelism=profile.parallelism,
            type=Type.ID,
        )
        self.max_concurrency = max_concurrency or os.cpu_count() or 1
        self._workers = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="keyturn-argon2")
        # Verified against when the account does not exist, at the same cost; see _dummy_hash.
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        self._rehash_verdicts: dict[tuple[str, int, int], bool] = {}

    def hash_sync(self, password: str) -> str:
        """Hash on the calling thread: for CLIs and worker threads, never the event loop."""
        return self._hasher.hash(password)

    def _dummy_hash(self) -> str:
        """The hash unknown accounts are verified against, made on first call (a hashing thread's).

        Every verification calls this, known account or not, so the one-off cost of making
        it cannot tell an attacker which kind of account the first login was for.
        """
        if self._dummy is not None:
            return self._dummy
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
            return self._dummy

    def _verify_sync(self, stored_hash: str | None, password: str) -> None:
        dummy = self._dummy_hash()
        try:
            self._hasher.verify(stored_hash or dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
            raise InvalidCredentials() from exc
        if stored_hash is None:
            raise InvalidCredentials()

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``, computed on one of the hasher's threads."""
        return await asyncio.wrap_future(self._workers.submit(self.hash_sync, password))

    async def verify(self, stored_hash: str | None, password: str) -> None:
        """Return if ``password`` matches ``stored_hash``; raise :class:`InvalidCredentials` if not.

        ``stored_hash=None`` (no such account) costs one full verification, then raises.
        """
        await asyncio.wrap_future(self._workers.submit(self._verify_sync, stored_hash, password))

    def close(self) -> None:
        """Let the hashing threads exit once the hashes already running are done."""
        self._workers.shutdown(wait=False, cancel_futures=True)

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when ``stored_hash`` was made with other parameters than the current profile.

        Asked after every successful login, and parsing a hash's parameters is ~20 µs of
        the event loop's time: the answer is remembered per parameter set, which is the
        hash up to its salt plus the salt's and digest's lengths (everything argon2-cffi
        compares). A database holds a handful of such sets, so the memory stays bounded.
        """
        prefix, _, digest = stored_hash.rpartition("$")
        head, _, salt = prefix.rpartition("$")
        key = (head, len(salt), len(digest))
        verdict = self._rehash_verdicts.get(key)
        if verdict is None:
            try:
                verdict = self._hasher.check_needs_rehash(stored_hash)
            except InvalidHashError:
                return True
            if len(self._rehash_verdicts) < _REHASH_VERDICTS:
                self._rehash_verdicts[key] = verdict
        return verdict
