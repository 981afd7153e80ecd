"""Sessions: one login, one chain of refresh tokens (CONTRACT.md §4).

Each refresh spends the presented token and returns a successor. The successor is
sealed under the spent token (see :mod:`keyturn.crypto.opaque`), so a retry of the
spent token inside the grace window gets *the same* successor back — two racing tabs
or a lost response do not log anyone out — while a replay after the window is theft:
the whole session is revoked and ``TOKEN_REUSED`` answered.

Which of several concurrent refreshes wins is decided by the store's conditional
update (:meth:`SessionStore.rotate`), never here: the losers read back what the
winner sealed and answer with it, so the chain cannot fork on any number of processes.

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
from keyturn.domain.accounts import acting_user
from keyturn.domain.models import (
    MAX_USER_AGENT,
    ClientInfo,
    PurgeCutoffs,
    Rotation,
    Session,
    SessionMode,
    SpentToken,
    TokenPair,
    User,
)
from keyturn.domain.ports import RevocationStore, SessionStore
from keyturn.domain.tokens import TokenIssuer
from keyturn.errors import NotFound, TokenExpired, TokenInvalid, TokenReused, TokenRevoked

__all__ = ["SessionPolicy", "Sessions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionPolicy:
    """The session rules, in seconds.

    ``refresh_ttl`` is absolute (counted from login, never extended by refreshing);
    ``idle_ttl`` (0 = off) ends a session that has not refreshed for that long;
    ``grace`` is how long a spent token may be retried for the same successor.
    """

    refresh_ttl: int
    idle_ttl: int
    grace: int
    access_ttl: int
    leeway: int

    @property
    def revocation_ttl(self) -> int:
        """How long a revoked session's access tokens can still verify (so must be refused)."""
        return self.access_ttl + self.leeway


def _client(client: ClientInfo) -> ClientInfo:
    """The client as stored: the user agent trimmed to its column, blank treated as absent."""
    return ClientInfo(client.ip, client.user_agent[:MAX_USER_AGENT] if client.user_agent else None)


class Sessions:
    """Start, rotate, list, revoke and purge sessions."""

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
        stored = _client(client)
        session = Session(
            id=str(uuid.uuid4()),
            user_id=user.id,
            created_at=now,
            last_used_at=now,
            expires_at=now + self._policy.refresh_ttl,
            mode=mode,
            user_agent=stored.user_agent,
            ip=stored.ip,
        )
        refresh = mint_refresh_token()
        await self._store.create(session, hash_secret(refresh))
        return await self._pair(user, session, refresh)

    def _ends_at(self, session: Session, now: float) -> float:
        """When the session ends if it is not used again: absolute expiry or idle timeout."""
        if self._policy.idle_ttl:
            return min(session.expires_at, now + self._policy.idle_ttl)
        return session.expires_at

    async def _pair(self, user: User, session: Session, refresh: str) -> TokenPair:
        access = await self._issuer.for_user(user, session_id=session.id)
        now = self._clock.now()
        return TokenPair(
            access=access.token,
            refresh_token=refresh,
            refresh_expires_in=max(0, int(self._ends_at(session, now) - now)),
            session=session,
            user=user,
            scopes=access.scopes,
        )

    async def refresh(self, token: str, client: ClientInfo) -> TokenPair:
        """Rotate ``token`` and return the successor with a fresh access token.

        Raises TokenInvalid (unknown token), TokenExpired (absolute or idle expiry),
        TokenRevoked (session revoked), TokenReused (spent token replayed after the
        grace window; the session is revoked first), AccountDisabled (owner disabled).
        """
        token_hash = hash_secret(token)
        found = await self._find(token_hash)
        user = acting_user(found.owner)
        if found.spent_at is None:
            successor = mint_refresh_token()
            rotation = Rotation(
                token_hash=token_hash,
                successor_hash=hash_secret(successor),
                sealed_successor=seal_successor(token, successor),
                session_id=found.session.id,
                at=self._clock.now(),
                client=_client(client),
            )
            if await self._store.rotate(rotation):
                return await self._pair(user, found.session, successor)
            # Lost a race with a concurrent refresh (or revocation): read what the winner wrote.
            found = await self._find(token_hash)
            if found.spent_at is None:  # the store refused for no reason it can show: fail closed
                raise TokenInvalid("The refresh token is invalid.")
        return await self._retry(token, found, user)

    async def _find(self, token_hash: str) -> SpentToken:
        """The stored token and its session, if the session may still refresh; raise otherwise."""
        found = await self._store.find_token(token_hash)
        if found is None:
            raise TokenInvalid("The refresh token is invalid.")
        self._check_session(found.session)
        return found

    async def _retry(self, token: str, found: SpentToken, user: User) -> TokenPair:
        """A spent token again: the same successor inside the grace window, theft after it."""
        spent_at = found.spent_at if found.spent_at is not None else float("-inf")
        in_grace = self._clock.now() - spent_at <= self._policy.grace
        successor = open_successor(token, found.sealed_successor) if found.sealed_successor else None
        if in_grace and successor is not None:
            return await self._pair(user, found.session, successor)
        await self.revoke([found.session.id])
        raise TokenReused()

    def _check_session(self, session: Session) -> None:
        now = self._clock.now()
        if session.revoked_at is not None:
            raise TokenRevoked()
        if now >= session.expires_at:
            raise TokenExpired("The refresh token has expired.")
        if self._idle(session, now):
            raise TokenExpired("The session has been idle for too long.")

    def _idle(self, session: Session, now: float) -> bool:
        return bool(self._policy.idle_ttl) and now - session.last_used_at >= self._policy.idle_ttl

    async def revoke(self, session_ids: Sequence[str]) -> list[str]:
        """Revoke sessions and, through the revocation list, their live access tokens.

        Returns the ids that were active until now. The revocation entry's lifetime is
        measured from *after* the store write, so an access token minted by a refresh
        that committed just before the revocation is still covered.
        """
        if not session_ids:
            return []
        revoked = await self._store.revoke(session_ids, self._clock.now())
        until = self._clock.now() + self._policy.revocation_ttl
        await self._revocations.revoke(list(session_ids), until)
        return revoked

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> list[str]:
        """Revoke every active session of ``user_id`` except ``keep``."""
        sessions = await self._store.active_for_user(user_id, self._clock.now())
        return await self.revoke([s.id for s in sessions if s.id != keep])

    async def revoke_own(self, user_id: str, session_id: str) -> None:
        """Revoke one of the caller's own live sessions; NotFound for anyone else's or a dead one."""
        session = await self._store.get(session_id)
        if session is None or session.user_id != user_id or not self._live(session, self._clock.now()):
            raise NotFound("No such session.")
        await self.revoke([session_id])

    def _live(self, session: Session, now: float) -> bool:
        return session.revoked_at is None and now < session.expires_at and not self._idle(session, now)

    async def session_of_refresh_token(self, token: str) -> Session | None:
        """The session a refresh token (spent or not) belongs to, or ``None``."""
        found = await self._store.find_token(hash_secret(token))
        return found.session if found else None

    async def active(self, user_id: str) -> list[Session]:
        """The user's sessions that can still refresh, oldest first."""
        now = self._clock.now()
        return [s for s in await self._store.active_for_user(user_id, now) if not self._idle(s, now)]

    async def check_access(self, token: AccessToken) -> None:
        """Raise TokenRevoked if the access token's session was revoked."""
        sid = token.session_id
        if sid is not None and await self._revocations.is_revoked(sid):
            raise TokenRevoked()

    async def purge(self) -> int:
        """Delete dead sessions (with their tokens), stale sealed successors and revocations.

        A session is dead once expired, idle past the idle timeout, or revoked for longer
        than its access tokens can live (until then its row answers TOKEN_REVOKED rather
        than TOKEN_INVALID). Spent token hashes stay as long as their session lives: they
        are what recognises a replay as theft rather than as an unknown token. Returns
        the number of rows removed.
        """
        now = self._clock.now()
        policy = self._policy
        cutoffs = PurgeCutoffs(
            now=now,
            spent_before=now - policy.grace,
            idle_before=now - policy.idle_ttl if policy.idle_ttl else None,
            revoked_before=now - policy.revocation_ttl,
        )
        removed = await self._store.purge(cutoffs)
        return removed + await self._revocations.purge(now)
