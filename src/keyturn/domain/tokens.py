"""Issuing and checking access tokens, with the live key ring and the configured claims."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from joserfc.jwk import OctKey

from keyturn.clock import Clock
from keyturn.crypto.access_tokens import AccessToken, IssuedToken, UnknownKeyId, VerifyOptions, issue_access_token
from keyturn.crypto.access_tokens import verify_access_token as _verify
from keyturn.domain.keyring import KeyManager
from keyturn.domain.models import User

__all__ = ["IssuedAccess", "ScopeMap", "TokenIssuer", "TokenPolicy"]

#: Maps a user's roles to the scopes they grant (``KEYTURN_ROLES``).
ScopeMap = Callable[[list[str]], list[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPolicy:
    issuer: str
    audience: str
    access_ttl: int
    leeway: int
    client_id: str = "keyturn"
    encryption_key: OctKey | None = None
    #: The encryption key being replaced: access tokens it encrypted still verify here.
    previous_encryption_key: OctKey | None = None


@dataclass(frozen=True, slots=True)
class IssuedAccess:
    token: IssuedToken
    scopes: tuple[str, ...]


class TokenIssuer:
    """Signs access tokens with the newest key and verifies them with the whole ring."""

    def __init__(self, keys: KeyManager, clock: Clock, policy: TokenPolicy, scopes_for: ScopeMap) -> None:
        self._keys = keys
        self._clock = clock
        self._policy = policy
        self._scopes_for = scopes_for
        self.verify_options = VerifyOptions(
            issuer=policy.issuer,
            audience=policy.audience,
            leeway=policy.leeway,
            decryption_key=policy.encryption_key,
            previous_decryption_key=policy.previous_encryption_key,
            require_encryption=policy.encryption_key is not None,
        )

    async def for_user(
        self,
        user: User,
        *,
        session_id: str | None,
        scopes: tuple[str, ...] | None = None,
        client_id: str | None = None,
        roles: tuple[str, ...] | None = None,
    ) -> IssuedAccess:
        """An access token for ``user``; ``scopes`` narrows the role-granted ones (API keys).

        ``roles`` overrides the ``roles`` claim (API keys pass ``()``: a key grants its
        scopes and never its owner's roles); the scopes are still computed from the
        user's own roles, so an override can never widen them.
        """
        ring = await self._keys.refresh_if_stale()
        granted = tuple(self._scopes_for(list(user.roles)))
        if scopes is not None:
            granted = tuple(s for s in granted if s in scopes)
        token = issue_access_token(
            ring.signing_key,
            issuer=self._policy.issuer,
            audience=self._policy.audience,
            subject=user.id,
            ttl=self._policy.access_ttl,
            now=self._clock.now(),
            session_id=session_id,
            client_id=client_id or self._policy.client_id,
            email=user.email,
            roles=user.roles if roles is None else roles,
            scope=" ".join(granted),
            encryption_key=self._policy.encryption_key,
        )
        return IssuedAccess(token=token, scopes=granted)

    async def verify(self, token: str) -> AccessToken:
        """Verify with the current ring, reloading it once (rate-limited) on an unknown kid.

        The kid is learnt inside the verifier, after decryption of a nested token.
        """
        ring = await self._keys.refresh_if_stale()
        try:
            return _verify(token, ring, self.verify_options, now=self._clock.now())
        except UnknownKeyId:
            ring = await self._keys.on_unknown_kid()
        return _verify(token, ring, self.verify_options, now=self._clock.now())
