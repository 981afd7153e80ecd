"""FastAPI dependencies: the services, the client, and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from keyturn.crypto.access_tokens import AccessToken
from keyturn.domain.models import ClientInfo, User
from keyturn.errors import Forbidden, Unauthorized
from keyturn.server.services import Services

__all__ = ["Caller", "CurrentCaller", "ServicesDep", "bearer_token", "client_info", "get_services", "require_role"]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def client_info(request: Request) -> ClientInfo:
    """The caller's address and user agent (the proxy-aware address is set by middleware)."""
    ip = getattr(request.state, "client_ip", None) or (request.client.host if request.client else None)
    return ClientInfo(ip=ip, user_agent=request.headers.get("user-agent"))


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or ``None`` when there is none."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified caller of a protected route."""

    token: AccessToken
    user: User

    @property
    def session_id(self) -> str | None:
        return self.token.session_id


async def current_caller(request: Request, services: ServicesDep) -> Caller:
    """Verify the Bearer token, check its session is not revoked, load the user."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized()
    verified = await services.tokens.verify(token)
    await services.sessions.check_access(verified)
    user = await services.load_active_user(verified.subject)
    return Caller(token=verified, user=user)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def require_role(role: str) -> object:
    """A dependency that admits only callers holding ``role``."""

    async def dependency(caller: CurrentCaller) -> Caller:
        if role not in caller.user.roles:
            raise Forbidden()
        return caller

    return Depends(dependency)
