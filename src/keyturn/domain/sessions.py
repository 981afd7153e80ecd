"""Sessions: one login, one chain of refresh tokens (CONTRACT.md §4).

Each refresh spends the presented token and returns a successor. The successor is
sealed under the spent token (see :mod:`keyturn.crypto.opaque`), so a retry of the
spent token inside the grace window gets *the same* successor back — two racing tabs
or a lost response do not log anyone out — while a replay after the window is theft:
the whole session is revoked and ``TOKEN_REUSED`` answered.

Revoking a session also revokes its access tokens: the session id goes into the
:class:`RevocationStore` until the last access token it could have signed expires.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from keyturn.clock import Clock
from keyturn.crypto.access_tokens import AccessToken
from keyturn.crypto.opaque import hash_secret, mint_refresh_token, open_successor, seal_successor
from keyturn.domain.models import ClientInfo, Rotation, Session, SessionMode, SpentToken, TokenPair, User
from keyturn.domain.ports import RevocationStore, SessionStore, UserLoader
from keyturn.domain.tokens import TokenIssuer
from keyturn.errors import NotFound, TokenExpired, TokenInvalid, TokenReused, TokenRevoked

__all__ = ["SessionPolicy", "Sessions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPolicy:
    refresh_ttl: int
    idle_ttl: int
    grace: int
    access_ttl: int
    leeway: int


class Sessions:
    """Start, rotate, list and revoke sessions."""

    def __init__(
        self,
        store: SessionStore,
        revocations: RevocationStore,
        issuer: TokenIssuer,
        clock: Clock,
        policy: SessionPolicy,
    ) -> None:
        self._store = store
        self._revocations = revocations
        self._issuer = issuer
        self._clock = clock
        self._policy = policy

    async def start(self, user: User, client: ClientInfo, mode: SessionMode = "body") -> TokenPair:
        """Open a session for an authenticated ``user`` and hand out its first tokens."""
        now = self._clock.now()
        session = Session(
            id=str(uuid.uuid4()),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=now + self._policy.refresh_ttl,
            mode=mode,
            user_agent=(client.user_agent or None) and client.user_agent[:512],
            ip=client.ip,
        )
        refresh = mint_refresh_token()
        await self._store.create(session, hash_secret(refresh))
        return await self._pair(user, session, refresh)

    async def _pair(self, user: User, session: Session, refresh: str) -> TokenPair:
        access = await self._issuer.for_user(user, session_id=session.id)
        remaining = max(0, int(session.expires_at - self._clock.now()))
        return TokenPair(
            access=access.token,
            refresh_token=refresh,
            refresh_expires_in=remaining,
            session=session,
            user=user,
            scopes=access.scopes,
        )

    async def refresh(self, token: str, client: ClientInfo, load_user: UserLoader) -> TokenPair:
        """Rotate ``token``; raise TokenInvalid, TokenExpired, TokenRevoked or TokenReused."""
        token_hash = hash_secret(token)
        found = await self._store.find_token(token_hash)
        if found is None:
            raise TokenInvalid("The refresh token is invalid.")
        self._check_session(found.session)
        user = await load_user(found.session.user_id)
        if found.spent_at is None:
            successor = mint_refresh_token()
            rotated = await self._store.rotate(
                Rotation(
                    token_hash=token_hash,
                    successor_hash=hash_secret(successor),
                    sealed_successor=seal_successor(token, successor),
                    session_id=found.session.id,
                    at=self._clock.now(),
                    client=ClientInfo(client.ip, client.user_agent and client.user_agent[:512]),
                )
            )
            if rotated:
                return await self._pair(user, found.session, successor)
            # Lost a race with a concurrent refresh: read what the winner wrote.
            found = await self._store.find_token(token_hash)
            if found is None or found.spent_at is None:
                raise TokenInvalid("The refresh token is invalid.")
            self._check_session(found.session)
        return await self._retry(token, found, user)

    async def _retry(self, token: str, found: SpentToken, user: User) -> TokenPair:
        spent_at = found.spent_at or 0.0
        successor = open_successor(token, found.sealed_successor) if found.sealed_successor else None
        if successor is not None and self._clock.now() - spent_at <= self._policy.grace:
            return await self._pair(user, found.session, successor)
        await self.revoke([found.session.id])
        raise TokenReused()

    def _check_session(self, session: Session) -> None:
        now = self._clock.now()
        if session.revoked_at is not None:
            raise TokenRevoked()
        if now >= session.expires_at:
            raise TokenExpired("The refresh token has expired.")
        if self._policy.idle_ttl and now - session.last_used_at >= self._policy.idle_ttl:
            raise TokenExpired("The session has been idle for too long.")

    async def revoke(self, session_ids: Sequence[str]) -> list[str]:
        """Revoke sessions and, through the revocation list, their live access tokens."""
        if not session_ids:
            return []
        now = self._clock.now()
        revoked = await self._store.revoke(session_ids, now)
        until = now + self._policy.access_ttl + self._policy.leeway
        await self._revocations.revoke(list(session_ids), until)
        return revoked

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> list[str]:
        """Revoke every active session of ``user_id`` except ``keep``."""
        sessions = await self._store.active_for_user(user_id, self._clock.now())
        return await self.revoke([s.id for s in sessions if s.id != keep])

    async def revoke_own(self, user_id: str, session_id: str) -> None:
        """Revoke one of the caller's own sessions; NotFound for anyone else's."""
        session = await self._store.get(session_id)
        if session is None or session.user_id != user_id or session.revoked_at is not None:
            raise NotFound("No such session.")
        await self.revoke([session_id])

    async def session_of_refresh_token(self, token: str) -> Session | None:
        found = await self._store.find_token(hash_secret(token))
        return found.session if found else None

    async def active(self, user_id: str) -> list[Session]:
        return await self._store.active_for_user(user_id, self._clock.now())

    async def check_access(self, token: AccessToken) -> None:
        """Raise TokenRevoked if the access token's session was revoked."""
        sid = token.session_id
        if sid is not None and await self._revocations.is_revoked(sid):
            raise TokenRevoked()

    async def purge(self) -> int:
        """Drop expired sessions (with their tokens), stale sealed successors and revocations.

        Spent token hashes stay as long as their session lives: they are what
        recognises a replay as theft rather than as an unknown token.
        """
        now = self._clock.now()
        removed = await self._store.purge(now, grace=self._policy.grace)
        return removed + await self._revocations.purge(now)
