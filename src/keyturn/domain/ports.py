"""What the domain needs from the outside world, as Protocols.

The SQL and Redis adapters in :mod:`keyturn.store` implement these; the domain
never imports them. Every method may raise
:class:`~keyturn.errors.ServiceUnavailable` when its backend is unreachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from keyturn.crypto.keys import SigningKey
from keyturn.domain.models import Rotation, Session, SpentToken, StoredUser, User

__all__ = ["KeyStore", "RevocationStore", "SessionStore", "UserLoader", "UserStore"]

#: Loads the account behind a session, raising if it may no longer act.
UserLoader = Callable[[str], Awaitable[User]]


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

    async def purge(self, now: float, grace: float) -> int:
        """Delete expired sessions and their tokens; forget sealed successors past ``grace``."""


class RevocationStore(Protocol):
    async def revoke(self, session_ids: Sequence[str], until: float) -> None:
        """Refuse access tokens of these sessions until ``until`` (when the last one expires)."""

    async def is_revoked(self, session_id: str) -> bool: ...

    async def purge(self, now: float) -> int: ...


class KeyStore(Protocol):
    async def load(self) -> list[SigningKey]: ...

    async def add(self, key: SigningKey) -> None: ...

    async def update_state(self, kid: str, state: str, drop_after: float | None) -> None: ...

    async def delete(self, kids: Sequence[str]) -> None: ...
