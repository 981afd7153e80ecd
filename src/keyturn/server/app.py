"""The composition root: :func:`create_app` wires settings, stores, domain and routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from keyturn.clock import Clock
from keyturn.envelope import error_response
from keyturn.errors import (
    InternalError,
    KeyturnError,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from keyturn.server.middleware import BodyLimitMiddleware
from keyturn.server.observability import ObservabilityMiddleware, note_error
from keyturn.server.proxies import TrustedProxyMiddleware
from keyturn.server.routes import admin, admin_keys, api_keys, audit, auth, health, metrics, wellknown
from keyturn.server.schemas import ErrorBody
from keyturn.server.services import Services, build_services
from keyturn.settings import Settings, load_settings

__all__ = ["create_app"]

log = logging.getLogger("keyturn")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        401: "Unauthenticated (UNAUTHORIZED, INVALID_CREDENTIALS, TOKEN_*)",
        403: "Forbidden (FORBIDDEN, CSRF_FAILED, ACCOUNT_DISABLED)",
        404: "Not found",
        409: "Conflict (EMAIL_TAKEN)",
        413: "Payload too large",
        422: "Validation error",
        429: "Rate limited",
        503: "Service unavailable",
    }.items()
}


def _json_error(error: KeyturnError) -> JSONResponse:
    status, headers, body = error_response(error)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _on_keyturn_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, KeyturnError):  # pragma: no cover - registered for KeyturnError only
        exc = InternalError()
    note_error(request, exc)
    return _json_error(exc)


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    fields = {_field_name(tuple(e.get("loc", ()))): str(e.get("msg", "is invalid")) for e in errors}
    return _json_error(ValidationFailed(fields=fields))


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    """Framework-level refusals, in the contract's codes.

    A wrong method is answered 404 NOT_FOUND (the contract has no 405 code) with the
    ``Allow`` header HTTP asks for; an unparseable body (e.g. not UTF-8) is a 422.
    """
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    if status == 405:
        response = _json_error(NotFound("This endpoint does not accept that method."))
        allow = getattr(exc, "headers", None) or {}
        if "Allow" in allow:
            response.headers["Allow"] = allow["Allow"]
        return response
    if status == 413:
        return _json_error(PayloadTooLarge())
    if status in (400, 422):
        return _json_error(ValidationFailed(fields={"body": "could not be parsed"}))
    if status == 404:
        return _json_error(NotFound())
    log.error("unexpected framework error status %s", status)
    return _json_error(InternalError())


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return _json_error(InternalError())


async def _purge_forever(services: Services) -> None:
    """Drop expired sessions, tokens and revocations on a schedule, so tables stay bounded."""
    while True:
        await anyio.sleep(services.settings.purge_interval)
        try:
            removed = await services.sessions.purge()
            log.info("purged expired sessions", extra={"rows": removed})
        except KeyturnError:
            log.warning("purge skipped: database unavailable")


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the keyturn auth server. Raises ConfigurationError for unsafe settings."""
    settings = settings or load_settings()
    settings.check_safe()
    services = build_services(settings, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await services.start()
        except BaseException:
            # A refused start (a ConfigurationError, say) must not leak the database pool.
            await services.close()
            raise
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_purge_forever, services)
            if services.fleet is not None:
                tasks.start_soon(services.fleet.run)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        await services.close()

    app = FastAPI(
        title="keyturn",
        version="0.1.0",
        summary="JWT authentication: users, sessions, tokens, keys.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.services = services
    app.add_exception_handler(KeyturnError, _on_keyturn_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    for router in (
        auth.router,
        api_keys.router,
        admin.router,
        admin_keys.router,
        audit.router,
        wellknown.router,
        health.router,
        metrics.router,
    ):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.body_limit)
    app.add_middleware(TrustedProxyMiddleware, trusted=settings.trusted_proxies)
    app.add_middleware(ObservabilityMiddleware)  # added last: outermost, so it sees every answer
    return app
