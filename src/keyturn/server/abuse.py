"""The login's defences in order — throttle, check the password, audit — and the per-client limits.

Kept out of the route so the order is in one place: the throttle answers *before* the
password is looked at (a locked account gives the right password the same 429), every
outcome is reported back to the throttle, and every refusal and failure is audited here
(a success is audited by the route, once the session it opened exists).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
from fastapi import Depends, Request

from keyturn.domain.audit import AuditEvent, AuditValue
from keyturn.domain.identity import normalise_email
from keyturn.domain.models import ClientInfo, User
from keyturn.errors import AccountDisabled, InvalidCredentials, KeyturnError, RateLimited, ValidationFailed
from keyturn.server.dependencies import client_info, get_services
from keyturn.server.ratelimit import LoginRefused, RateLimits, Throttled, WindowLimit
from keyturn.server.services import Services

__all__ = [
    "REFRESH_LIMIT",
    "REGISTER_LIMIT",
    "TOKEN_LIMIT",
    "attempted_email",
    "audit_reuse",
    "authenticate",
    "change_password",
]

#: At most one audit record per refused client (or account) per this many seconds.
THROTTLE_AUDIT_EVERY: Final = 60


def attempted_email(raw: str) -> str | None:
    """The e-mail a login attempted, normalised — or ``None`` when it is not an e-mail address.

    People type their password into the e-mail field; what is not an address is not
    recorded, so that a password never lands in the audit trail.
    """
    try:
        return normalise_email(raw)
    except ValidationFailed:
        return None


async def _audit_throttled(services: Services, throttled: Throttled, email: str | None, client: ClientInfo) -> None:
    if not await services.rate_limits.once_per(f"login-{throttled.scope}/{throttled.identity}", THROTTLE_AUDIT_EVERY):
        return
    await services.audit.record(
        AuditEvent.LOGIN_THROTTLED,
        client=client,
        email=email,
        detail={"scope": throttled.scope, "retry_after": throttled.retry_after, "strike": throttled.strike},
    )


async def authenticate(services: Services, email: str, password: str, client: ClientInfo) -> User:
    """The account these credentials open, behind the login throttle; refusals and failures audited.

    Raises RateLimited (throttled: nothing was checked), InvalidCredentials, AccountDisabled,
    ValidationFailed or ServiceUnavailable.
    """
    return await _guarded(services, email, client, lambda: services.accounts.authenticate(email, password), "login")


async def change_password(services: Services, user: User, current: str, new: str, client: ClientInfo) -> User:
    """Change ``user``'s password behind the same throttle as logins.

    A stolen access token must not become an unlimited oracle for the current password.
    Raises what :meth:`~keyturn.domain.accounts.Accounts.change_password` raises, and RateLimited.
    """
    return await _guarded(
        services, user.email, client, lambda: services.accounts.change_password(user.id, current, new), "password"
    )


async def _guarded(
    services: Services, email: str, client: ClientInfo, check: Callable[[], Awaitable[User]], during: str
) -> User:
    """Run the password ``check`` as one throttled attempt and audit a refusal or failure."""
    attempted = attempted_email(email)
    try:
        attempt = await services.rate_limits.login.admit(email, client.ip)
    except LoginRefused as refused:
        await _audit_throttled(services, refused.throttled, attempted, client)
        raise
    try:
        user = await check()
    except InvalidCredentials:
        lock = await attempt.failed()
        detail: dict[str, AuditValue] = {"reason": "invalid_credentials", "during": during}
        if lock is not None:
            detail |= {"locked_for": lock.seconds, "strike": lock.strike}
        await _audit_failed(services, attempted, client, detail)
        raise
    except AccountDisabled:
        await attempt.succeeded()  # the password was right; the account is switched off
        await _audit_failed(services, attempted, client, {"reason": "account_disabled", "during": during})
        raise
    except ValidationFailed:
        await attempt.succeeded()  # only a new password is validated after the current one matched
        raise
    except BaseException:
        with anyio.CancelScope(shield=True):
            await attempt.abandoned()
        raise
    await attempt.succeeded()
    return user


async def _audit_failed(
    services: Services, email: str | None, client: ClientInfo, detail: dict[str, AuditValue]
) -> None:
    stored = await services.users.by_email(email) if email else None
    user_id = stored.user.id if stored else None
    await services.audit.record(AuditEvent.LOGIN_FAILED, client=client, email=email, user_id=user_id, detail=detail)


async def audit_reuse(services: Services, token: str, client: ClientInfo) -> None:
    """Record a refresh-token replay (theft): whose session, from where. The token itself is not kept."""
    session = await services.sessions.session_of_refresh_token(token)
    await services.audit.record(
        AuditEvent.TOKEN_REUSE_DETECTED,
        client=client,
        user_id=session.user_id if session else None,
        detail={"session_id": session.id if session else None},
    )


async def audit_refused_key(services: Services, error: KeyturnError, client: ClientInfo) -> None:
    """Record a refused API-key exchange: at most once a minute per client, like throttled requests.

    Guessing keys is already throttled by KEYTURN_RATE_LIMIT_TOKEN; a flood of guesses must not
    become a flood of audit rows. The key itself is never recorded (nor is it known to be a key).
    """
    if await services.rate_limits.once_per(f"api_key.refused/{client.ip}", THROTTLE_AUDIT_EVERY):
        await services.audit.record(AuditEvent.API_KEY_REFUSED, client=client, detail={"reason": error.code.lower()})


def _per_client(pick: Callable[[RateLimits], WindowLimit], scope: str) -> Any:
    """A route dependency that counts every request of a client against one limit."""

    async def dependency(request: Request) -> None:
        services = get_services(request)
        client = client_info(request)
        try:
            await pick(services.rate_limits).take(client.ip or "-")
        except RateLimited as exc:
            if await services.rate_limits.once_per(f"{scope}/{client.ip}", THROTTLE_AUDIT_EVERY):
                await services.audit.record(
                    AuditEvent.RATE_LIMITED, client=client, detail={"scope": scope, "retry_after": exc.retry_after}
                )
            raise

    return Depends(dependency)


#: Register: every request of a client counts (KEYTURN_RATE_LIMIT_REGISTER).
REGISTER_LIMIT = _per_client(lambda limits: limits.register, "register")
#: Refresh: every request of a client counts (KEYTURN_RATE_LIMIT_REFRESH).
REFRESH_LIMIT = _per_client(lambda limits: limits.refresh, "refresh")
#: API-key exchange: every request of a client counts (KEYTURN_RATE_LIMIT_TOKEN).
TOKEN_LIMIT = _per_client(lambda limits: limits.token, "token")
