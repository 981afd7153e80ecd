"""FastAPI dependencies: the services, the client, and the authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from keyturn.crypto.access_tokens import AccessToken
from keyturn.domain.api_keys import is_api_key_session
from keyturn.domain.audit import AuditValue
from keyturn.domain.models import ClientInfo, User
from keyturn.errors import Forbidden, Unauthorized
from keyturn.server.services import Services

__all__ = [
    "Caller",
    "ClientDep",
    "CurrentCaller",
    "ServicesDep",
    "SessionCaller",
    "bearer_token",
    "client_info",
    "get_services",
    "record_own",
    "require_role",
    "session_caller",
]


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services(request: Request) -> Services:
    # A coroutine on purpose: FastAPI runs a plain ``def`` dependency on a worker
    # thread, which costs a thread hop per request for an attribute read.
    return get_services(request)


ServicesDep = Annotated[Services, Depends(_services)]


def client_info(request: Request) -> ClientInfo:
    """The caller's address and user agent (the proxy-aware address is set by middleware)."""
    ip = getattr(request.state, "client_ip", None) or (request.client.host if request.client else None)
    return ClientInfo(ip=ip, user_agent=request.headers.get("user-agent"))


async def _client(request: Request) -> ClientInfo:
    return client_info(request)  # a coroutine for the same reason as ``_services``


ClientDep = Annotated[ClientInfo, Depends(_client)]


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
    """The verified caller of a protected route.

    ``token`` is ``None`` when the caller sent ``X-API-Key`` instead of a Bearer token;
    ``api_key_id`` then names the key, and ``scopes`` are the key's.
    """

    token: AccessToken | None
    user: User
    scopes: frozenset[str] = frozenset()
    api_key_id: str | None = None

    @property
    def session_id(self) -> str | None:
        return self.token.session_id if self.token is not None else None

    @property
    def by_api_key(self) -> bool:
        """True when an API key stands behind this call: ``X-API-Key``, or a token exchanged for one."""
        return self.api_key_id is not None or is_api_key_session(self.session_id)

    @property
    def roles(self) -> tuple[str, ...]:
        """The account's current roles; none for an API key, which grants only its scopes."""
        return () if self.by_api_key else self.user.roles


async def current_caller(request: Request, services: ServicesDep) -> Caller:
    """Verify the Bearer token (or, without one, the ``X-API-Key``), check revocation, load the user.

    Bearer wins when both are sent. A key costs one hash and one indexed lookup.
    Raises Unauthorized, a TokenError, or AccountDisabled.
    """
    token = bearer_token(request)
    if token is None:
        api_key = request.headers.get("x-api-key", "").strip()
        if api_key:
            holder = await services.api_keys.authenticate(api_key)
            return Caller(token=None, user=holder.user, scopes=frozenset(holder.scopes), api_key_id=holder.api_key.id)
        raise Unauthorized()
    verified = await services.tokens.verify(token)
    await services.sessions.check_access(verified)
    user = await services.load_active_user(verified.subject)
    return Caller(token=verified, user=user, scopes=verified.scopes)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def require_role(role: str) -> object:
    """A dependency that admits only callers holding ``role``."""

    async def dependency(caller: CurrentCaller) -> Caller:
        if role not in caller.roles:
            raise Forbidden()
        return caller

    return Depends(dependency)


async def session_caller(caller: CurrentCaller) -> Caller:
    """The caller, if they logged in; API keys (and tokens exchanged for one) are Forbidden.

    Managing the account — its sessions, its password, its API keys — needs a login, so
    a leaked key can neither mint a successor nor lock its owner out.
    """
    if caller.by_api_key:
        raise Forbidden("This needs a logged-in session; API keys cannot do it.")
    return caller


SessionCaller = Annotated[Caller, Depends(session_caller)]


async def record_own(services: Services, event: str, user: User, client: ClientInfo, **detail: AuditValue) -> None:
    """Audit something a user did with their own account (they are both actor and subject)."""
    await services.audit.record(event, client=client, actor_id=user.id, user_id=user.id, detail=detail)
