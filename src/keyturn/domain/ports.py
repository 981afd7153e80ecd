"""What the domain needs from the outside world, as Protocols.

The SQL and Redis adapters in :mod:`keyturn.store` implement these; the domain
never imports them. Every method may raise
:class:`~keyturn.errors.ServiceUnavailable` when its backend is unreachable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from keyturn.crypto.keys import KeyChange, SigningKey
from keyturn.domain.models import ApiKey, PurgeCutoffs, Rotation, Session, SpentToken, StoredUser, User

if TYPE_CHECKING:  # the records live beside the audit rules; only their types are needed here
    from keyturn.domain.audit import AuditEntry, StoredAuditEntry

__all__ = ["ApiKeyStore", "AuditStore", "KeyStore", "RevocationStore", "SessionStore", "UserStore"]


class UserStore(Protocol):
    async def add(self, user: User, password_hash: str) -> None:
        """Insert ``user``; raise :class:`~keyturn.errors.EmailTaken` if the e-mail exists."""

    async def by_email(self, email: str) -> StoredUser | None: ...

    async def by_id(self, user_id: str) -> StoredUser | None: ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def update(self, user_id: str, *, roles: Sequence[str] | None, disabled: bool | None) -> User | None: ...

    async def page(self, *, after: str | None, limit: int) -> list[User]:
        """Users ordered by id, starting after the id ``after``."""


class SessionStore(Protocol):
    async def create(self, session: Session, token_hash: str) -> None:
        """Insert a session and its first refresh token, atomically."""

    async def find_token(self, token_hash: str) -> SpentToken | None: ...

    async def rotate(self, rotation: Rotation) -> bool:
        """Spend the token and insert its successor in one transaction.

        Returns ``False`` (changing nothing) when the token was already spent or its
        session revoked: the conditional update is what keeps racing refreshes, on any
        number of processes, from forking the chain.
        """

    async def get(self, session_id: str) -> Session | None: ...

    async def revoke(self, session_ids: Sequence[str], now: float) -> list[str]:
        """Revoke these sessions; return the ids that were active until now."""

    async def active_for_user(self, user_id: str, now: float) -> list[Session]: ...

    async def purge(self, cutoffs: PurgeCutoffs) -> int:
        """Delete dead sessions and their tokens, forget stale sealed successors; return rows deleted."""


class RevocationStore(Protocol):
    async def revoke(self, session_ids: Sequence[str], until: float) -> None:
        """Refuse access tokens of these sessions until ``until`` (when the last one expires)."""

    async def is_revoked(self, session_id: str) -> bool: ...

    async def purge(self, now: float) -> int: ...


class ApiKeyStore(Protocol):
    async def add(self, key: ApiKey, key_hash: str) -> None:
        """Insert ``key`` under the SHA-256 ``key_hash`` of its secret."""

    async def by_hash(self, key_hash: str) -> tuple[ApiKey, User] | None:
        """The key whose secret hashes to ``key_hash`` (revoked and expired ones included), with its owner.

        One query for both: this runs on every request made with ``X-API-Key``.
        """

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def for_user(self, user_id: str) -> list[ApiKey]:
        """The user's keys that are not revoked, oldest first."""

    async def count_live(self, user_id: str, now: float) -> int:
        """How many of the user's keys are neither revoked nor expired at ``now``."""

    async def revoke(self, user_id: str, key_id: str, now: float) -> bool:
        """Revoke the user's key; ``False`` when it is not theirs or already revoked."""

    async def touch(self, key_id: str, at: float, *, not_since: float) -> None:
        """Set ``last_used_at`` to ``at`` unless it is already later than ``not_since``."""


class KeyStore(Protocol):
    async def load(self) -> list[SigningKey]:
        """Every stored key, private part included; raise ConfigurationError if one cannot be opened."""

    async def apply(self, change: KeyChange) -> bool:
        """Apply ``change`` in one transaction; ``False`` (nothing changed) when its expectation failed."""

    async def reseal(self) -> int:
        """Seal every key stored in clear, or under the KEK being replaced, with the current KEK.

        Returns how many were rewritten.
        """


class AuditStore(Protocol):
    async def append(self, entry: AuditEntry) -> StoredAuditEntry:
        """Chain ``entry`` after the newest record and insert it, atomically.

        Appends are serialised across every process sharing the database, so two
        records never claim the same predecessor.
        """

    async def page(
        self, *, user_id: str | None, event: str | None, before: int | None, limit: int
    ) -> list[StoredAuditEntry]:
        """Newest first, ids below ``before``; ``user_id`` matches the subject or the actor."""

    async def after(self, after_id: int, limit: int) -> list[StoredAuditEntry]:
        """Oldest first, ids above ``after_id``."""

    async def latest(self, count: int) -> list[StoredAuditEntry]:
        """The newest ``count`` records, oldest first."""

    async def purge(self, cutoff: float, note: Callable[[int, int, str], AuditEntry]) -> StoredAuditEntry | None:
        """Delete the oldest records up to the first one at or after ``cutoff``, and chain a note.

        In one transaction under the appenders' lock: ``note(removed, through_id, anchor)``
        (``anchor`` the hash of the last record removed) is chained after the newest record.
        ``None``, and nothing written, when no record is that old.
        """
