"""The composition root: :func:`create_app` wires settings, stores, domain and routes."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
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
from keyturn.server.services import Services, build_services
from keyturn.settings import Settings, load_settings

__all__ = ["create_app"]

log = logging.getLogger("keyturn")


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
    """Drop expired sessions, tokens and revocations on a schedule, so tables stay bounded.

    With ``KEYTURN_AUDIT_RETENTION`` set, audit records older than it go too (the chain
    records the purge, so it still verifies).
    """
    while True:
        await anyio.sleep(services.settings.purge_interval)
        try:
            removed = await services.sessions.purge()
            log.info("purged expired sessions", extra={"rows": removed})
            if services.settings.audit_retention:
                await services.audit.purge(services.settings.audit_retention)
        except KeyturnError:
            log.warning("purge skipped: database unavailable")


#: Every router of the server, in matching order.
ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    api_keys.router,
    admin.router,
    admin_keys.router,
    audit.router,
    wellknown.router,
    health.router,
    metrics.router,
)


def _serve_flat(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Put every route of ``routers`` straight into the app's route table.

    Since FastAPI 0.137, ``include_router`` keeps each router as a nested node that every
    request walks: candidate lists, a routes-version check and scope bookkeeping for each
    route tried, before the one that matches. Measured in-process, that matching was about
    40% of a ``/healthz`` request's CPU time and 5% of a refresh's. The routes of these
    routers are already complete (their prefix, tags and dependencies were applied when
    they were declared, and none is included with extra options), so they are served flat,
    as routes declared on the app itself would be. tests/server/test_discovery.py checks that
    the OpenAPI document is the one ``include_router`` builds.
    """
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):  # pragma: no cover - every route here is an APIRoute
                raise TypeError(f"{route!r} cannot be served flat")
            app.router.routes.append(route)


@contextlib.contextmanager
def _startup_heap_frozen() -> Iterator[None]:
    """While serving, leave the objects that exist at startup out of garbage collection.

    A started server holds ~105,000 objects it built at startup (FastAPI's routes and
    models, SQLAlchemy's tables, pydantic's validators) that live as long as it does. A
    full collection walks all of them and stops the event loop while it does: 75-80 ms
    on a fast host, every ~30 s under a stream of cheap logins (docs/performance.md).
    ``gc.freeze`` moves them to the collector's permanent generation, so a full collection
    walks only what was made since. Freezing is O(1) and collects nothing, so what was
    already garbage at startup stays until shutdown, where the heap is handed back.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, freeze_startup_heap: bool = True
) -> FastAPI:
    """Build the keyturn auth server. Raises ConfigurationError for unsafe settings.

    ``freeze_startup_heap`` (see :func:`_startup_heap_frozen`) is for a process that serves
    one app for its life. A test process that starts an app per test can turn it off: each
    shutdown hands its whole heap back to the collector, which then walks it all once more.
    """
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
                with _startup_heap_frozen() if freeze_startup_heap else contextlib.nullcontext():
                    yield
            finally:
                tasks.cancel_scope.cancel()
        await services.close()

    app = FastAPI(
        title="keyturn",
        version="0.1.0",
        summary="JWT authentication: users, sessions, tokens, keys.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_exception_handler(KeyturnError, _on_keyturn_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
    _serve_flat(app, ROUTERS)
    app.add_middleware(BodyLimitMiddleware, limit=settings.body_limit)
    app.add_middleware(TrustedProxyMiddleware, trusted=settings.trusted_proxies)
    app.add_middleware(ObservabilityMiddleware)  # added last: outermost, so it sees every answer
    return app
