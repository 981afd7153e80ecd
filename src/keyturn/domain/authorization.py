"""Who may do what: pure predicates over roles and scopes, shared by server and guards."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keyturn.errors import Forbidden

__all__ = ["Principal", "require"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller: who they are and what their token lets them do."""

    sub: str
    email: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    session_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        roles = claims.get("roles", [])
        scope = claims.get("scope", "")
        email = claims.get("email")
        sid = claims.get("sid")
        return cls(
            sub=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
            roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            session_id=sid if isinstance(sid, str) else None,
            claims=dict(claims),
        )

    def has_roles(self, roles: Iterable[str]) -> bool:
        """True when the principal holds *every* one of ``roles``."""
        return set(roles) <= self.roles

    def has_scopes(self, scopes: Iterable[str]) -> bool:
        """True when the token grants *every* one of ``scopes``."""
        return set(scopes) <= self.scopes


def require(principal: Principal, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> Principal:
    """Return ``principal`` if it holds all ``roles`` and ``scopes``; raise :class:`Forbidden` if not."""
    if not principal.has_roles(roles) or not principal.has_scopes(scopes):
        raise Forbidden()
    return principal
