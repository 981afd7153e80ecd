"""``/auth/*``: register, login, refresh, logout, me, sessions, password (CONTRACT.md §2, §4)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response

from keyturn.domain.audit import AuditEvent
from keyturn.domain.models import TokenPair
from keyturn.errors import NotFound, TokenInvalid, TokenReused, Unauthorized
from keyturn.server import abuse
from keyturn.server.dependencies import ClientDep, CurrentCaller, ServicesDep, SessionCaller, record_own
from keyturn.server.schemas import (
    ERROR_RESPONSES,
    AccessTokenData,
    LoginRequest,
    LogoutRequest,
    Ok,
    PasswordChangedData,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    RevokedData,
    SessionOut,
    SessionsData,
    TokenData,
    UserData,
    UserOut,
)
from keyturn.server.services import Services

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)


TokenAnswer = Ok[TokenData] | Ok[AccessTokenData]


def _answer(services: Services, response: Response, pair: TokenPair) -> TokenAnswer:
    """Body mode returns the refresh token; cookie mode sets it as a cookie, never in the body."""
    access = AccessTokenData(
        access_token=pair.access.token,
        expires_in=pair.access.expires_in,
        refresh_expires_in=pair.refresh_expires_in,
        scope=" ".join(pair.scopes),
        user=UserOut.of(pair.user),
    )
    if pair.session.mode == "cookie" or pair.refresh_token is None:
        if pair.refresh_token:
            services.cookies.set(response, pair.refresh_token, pair.refresh_expires_in)
        return Ok(data=access)
    return Ok(data=TokenData(**access.model_dump(), refresh_token=pair.refresh_token))


@router.post(
    "/register",
    status_code=201,
    response_model=Ok[UserData],
    summary="Create an account",
    dependencies=[abuse.REGISTER_LIMIT],
)
async def register(body: RegisterRequest, services: ServicesDep, client: ClientDep) -> Ok[UserData]:
    user = await services.accounts.register(body.email, body.password, body.name)
    await services.audit.record(
        AuditEvent.REGISTERED, client=client, actor_id=user.id, user_id=user.id, email=user.email
    )
    return Ok(data=UserData(user=UserOut.of(user)))


@router.post("/login", response_model=TokenAnswer, summary="Log in")
async def login(body: LoginRequest, services: ServicesDep, client: ClientDep, response: Response) -> TokenAnswer:
    user = await abuse.authenticate(services, body.email, body.password, client)
    pair = await services.sessions.start(user, client, body.session)
    await services.audit.record(
        AuditEvent.LOGIN_SUCCEEDED,
        client=client,
        actor_id=user.id,
        user_id=user.id,
        email=user.email,
        detail={"session_id": pair.session.id, "mode": pair.session.mode},
    )
    return _answer(services, response, pair)


@router.post(
    "/refresh", response_model=TokenAnswer, summary="Rotate a refresh token", dependencies=[abuse.REFRESH_LIMIT]
)
async def refresh(
    request: Request,
    services: ServicesDep,
    client: ClientDep,
    response: Response,
    body: Annotated[RefreshRequest | None, Body()] = None,
) -> TokenAnswer:
    token = body.refresh_token if body else None
    if token is None:
        token = services.cookies.refresh_token(request)
        if token is None:
            raise Unauthorized("A refresh token is required.")
        services.cookies.check_csrf(request)
    try:
        pair = await services.sessions.refresh(token, client)
    except TokenReused:
        await abuse.audit_reuse(services, token, client)
        raise
    await record_own(services, AuditEvent.TOKEN_REFRESHED, pair.user, client, session_id=pair.session.id)
    return _answer(services, response, pair)


@router.post("/logout", response_model=Ok[RevokedData], summary="Revoke this session")
async def logout(
    *,
    request: Request,
    caller: SessionCaller,
    services: ServicesDep,
    response: Response,
    client: ClientDep,
    body: Annotated[LogoutRequest | None, Body()] = None,
) -> Ok[RevokedData]:
    targets = {caller.session_id} if caller.session_id else set()
    token = body.refresh_token if body else None
    if token is None and (cookie := services.cookies.refresh_token(request)) is not None:
        services.cookies.check_csrf(request)
        token = cookie
        services.cookies.clear(response)
    if token is not None:
        session = await services.sessions.session_of_refresh_token(token)
        if session is None or session.user_id != caller.user.id:
            raise TokenInvalid("The refresh token is invalid.")
        targets.add(session.id)
    revoked = await services.sessions.revoke(sorted(t for t in targets if t))
    await record_own(services, AuditEvent.LOGGED_OUT, caller.user, client, sessions=revoked)
    return Ok(data=RevokedData(revoked=len(revoked)))


@router.post("/logout-all", response_model=Ok[RevokedData], summary="Revoke every session")
async def logout_all(
    caller: SessionCaller, services: ServicesDep, response: Response, client: ClientDep
) -> Ok[RevokedData]:
    revoked = await services.sessions.revoke_all(caller.user.id)
    if caller.session_id:
        await services.sessions.revoke([caller.session_id])
    services.cookies.clear(response)
    await record_own(services, AuditEvent.LOGGED_OUT_ALL, caller.user, client, revoked=len(revoked))
    return Ok(data=RevokedData(revoked=len(revoked)))


@router.get("/me", response_model=Ok[UserData], summary="The caller's account")
async def me(caller: CurrentCaller) -> Ok[UserData]:
    return Ok(data=UserData(user=UserOut.of(caller.user)))


@router.get("/sessions", response_model=Ok[SessionsData], summary="The caller's active sessions")
async def list_sessions(caller: SessionCaller, services: ServicesDep) -> Ok[SessionsData]:
    sessions = await services.sessions.active(caller.user.id)
    return Ok(data=SessionsData(sessions=[SessionOut.of(s, caller.session_id) for s in sessions]))


@router.delete("/sessions/{session_id}", response_model=Ok[RevokedData], summary="Revoke one of your sessions")
async def revoke_session(
    session_id: str, caller: SessionCaller, services: ServicesDep, client: ClientDep
) -> Ok[RevokedData]:
    if len(session_id) > 64:
        raise NotFound("No such session.")
    await services.sessions.revoke_own(caller.user.id, session_id)
    await record_own(services, AuditEvent.SESSION_REVOKED, caller.user, client, session_id=session_id)
    return Ok(data=RevokedData(revoked=1))


@router.post("/password", response_model=Ok[PasswordChangedData], summary="Change your password")
async def change_password(
    body: PasswordChangeRequest, caller: SessionCaller, services: ServicesDep, client: ClientDep
) -> Ok[PasswordChangedData]:
    user = await abuse.change_password(services, caller.user, body.current_password, body.new_password, client)
    revoked = await services.sessions.revoke_all(user.id, keep=caller.session_id)
    await services.audit.record(
        AuditEvent.PASSWORD_CHANGED,
        client=client,
        actor_id=user.id,
        user_id=user.id,
        detail={"revoked_sessions": len(revoked)},
    )
    return Ok(data=PasswordChangedData(user=UserOut.of(user), revoked_sessions=len(revoked)))
