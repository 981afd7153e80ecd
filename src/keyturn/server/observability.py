"""Observability: Prometheus metrics, JSON log lines, and a request id on every request.

:class:`ObservabilityMiddleware` is the outermost application middleware. For each
HTTP request it takes a sane incoming ``X-Request-ID`` (or mints one), echoes it in
the response, makes it visible to every log line written while the request runs, and
on completion counts the request under its *route template* (``/auth/sessions/{session_id}``,
never the raw path, so label cardinality stays bounded) and writes one access-log line.

What a route's errors were is learnt from :func:`note_error`, which the app's
exception handlers call: the login and refresh counters are labelled by the
contract's error code (``success``, ``invalid_credentials``, ``token_reused`` ...).

Nothing here logs a raw path, a query string, a header value or a body: secrets travel
in those (the access log names the route template instead).

Metrics live in the process-wide registry. Under ``keyturn serve --workers N`` each
worker is a process, so ``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory (before this module is imported: prometheus_client picks its mode at
import) and :func:`render_metrics` aggregates every worker's files: one scrape of one
instance sees the whole instance.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import os
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyturn.errors import KeyturnError

__all__ = [
    "REQUESTS",
    "LATENCY",
    "LOGINS",
    "REFRESHES",
    "REUSE_DETECTED",
    "RATE_LIMITED",
    "JsonFormatter",
    "RequestIdFilter",
    "ObservabilityMiddleware",
    "logging_config",
    "note_error",
    "render_metrics",
    "request_id_var",
]

REQUEST_ID_HEADER: Final = "x-request-id"
#: Incoming ids are kept only if they look like ids (no log injection, bounded size).
_SANE_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE: Final = "unmatched"
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the output and nothing here needs them

REQUESTS = Counter(
    "keyturn_http_requests_total", "HTTP requests answered, by route template.", ["route", "method", "status"]
)
LATENCY = Histogram("keyturn_http_request_duration_seconds", "Time to answer an HTTP request.", ["route"])
LOGINS = Counter("keyturn_logins_total", "Password logins, by outcome (success or the error code).", ["outcome"])
REFRESHES = Counter("keyturn_refreshes_total", "Refresh-token rotations, by outcome.", ["outcome"])
REUSE_DETECTED = Counter(
    "keyturn_refresh_reuse_detected_total", "Spent refresh tokens replayed after the grace window (session revoked)."
)
RATE_LIMITED = Counter("keyturn_rate_limited_total", "Requests refused with RATE_LIMITED, by limit.", ["limit"])

_OUTCOMES: Final = {"/auth/login": LOGINS, "/auth/refresh": REFRESHES}
_STATUS_CODES: Final = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    500: "internal_error",
}

#: The id of the request being handled, for every log line written on its behalf.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("keyturn_request_id", default=None)

access_log = logging.getLogger("keyturn.access")


def note_error(request: Request, error: KeyturnError) -> None:
    """Remember which contract error answered ``request`` (for the outcome counters)."""
    request.state.error_code = error.code
    limit = getattr(error, "limit", None)
    if isinstance(limit, str):
        request.state.rate_limit = limit


def render_metrics() -> tuple[bytes, str]:
    """The Prometheus text exposition of this process, or of every worker in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _outcome(status: int, state: dict[str, Any]) -> str:
    if status < 400:
        return "success"
    code = state.get("error_code")
    if isinstance(code, str):
        return code.lower()
    return _STATUS_CODES.get(status, f"http_{status}")


class ObservabilityMiddleware:
    """Request id, metrics and the access log for every HTTP request (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _record(scope, state, status, time.perf_counter() - started)
            request_id_var.reset(token)


@functools.lru_cache(maxsize=1024)
def _series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """The request counter and latency histogram of one (route, method, status).

    Looked up once, not per request: ``labels()`` validates, locks and hashes on every call.
    Routes are templates and methods the parser's fixed set, so the cache only bounds what
    is already bounded.
    """
    return REQUESTS.labels(route=route, method=method, status=str(status)), LATENCY.labels(route=route)


def _record(scope: Scope, state: dict[str, Any], status: int, elapsed: float) -> None:
    route = _route_of(scope)
    method = str(scope.get("method", ""))
    requests, latency = _series(route, method, status)
    requests.inc()
    latency.observe(elapsed)
    outcome = _outcome(status, state)
    if (counter := _OUTCOMES.get(route)) is not None:
        counter.labels(outcome=outcome).inc()
    if outcome == "token_reused":
        REUSE_DETECTED.inc()
    if status == 429:
        RATE_LIMITED.labels(limit=str(state.get("rate_limit") or route)).inc()
    client = scope.get("client")
    access_log.info(
        "request",
        extra={
            "method": method,
            "route": route,
            "status": status,
            "request_id": state.get("request_id"),
            "duration_ms": round(elapsed * 1000, 2),
            "client": state.get("client_ip") or (client[0] if client else None),
        },
    )


#: Attributes every LogRecord has; anything else on a record was passed as ``extra``.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime", "color_message", "taskName"}
)


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id of the request it was written for, where it is written.

    Formatting may happen later or elsewhere (a queue handler, a test's capture), when
    the request's context is gone: the id must travel on the record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(*, level: str = "info", fmt: str = "json") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the server (uvicorn's loggers included).

    Every logger propagates to one stderr handler; uvicorn's own access log is left
    off because :class:`ObservabilityMiddleware` writes a better one.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": f"{__name__}.JsonFormatter"},
            "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        },
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }
