"""Flask: ``@guard.flask_required(roles=..., scopes=...)`` verifies the caller and sets ``flask.g.principal``.

Refusals are answered in the contract's envelope by the decorator itself; :func:`install`
makes the application's other errors (keyturn errors raised in views, 404, 405, …)
use the envelope too. Views are synchronous; the guard uses its blocking HTTP client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from keyturn.domain.authorization import Principal, require
from keyturn.envelope import error_response
from keyturn.errors import KeyturnError, Unauthorized
from keyturn.guard.responses import http_error_response
from keyturn.guard.verifier import Guard

__all__ = ["current_principal", "envelope_response", "install", "required"]

View = TypeVar("View", bound=Callable[..., Any])


def envelope_response(error: KeyturnError) -> tuple[Response, int, dict[str, str]]:
    """``error`` as the contract's failure envelope, in Flask's return shape."""
    status, headers, body = error_response(error)
    return jsonify(body), status, headers


def required(guard: Guard, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> Callable[[View], View]:
    """The decorator behind :meth:`Guard.flask_required`."""
    needed_roles, needed_scopes = frozenset(roles), frozenset(scopes)

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                headers = request.headers
                principal = guard.authenticate_sync(headers.get("Authorization"), headers.get("X-API-Key"))
                require(principal, roles=needed_roles, scopes=needed_scopes)
            except KeyturnError as error:
                return envelope_response(error)
            g.principal = principal
            return view(*args, **kwargs)

        return cast(View, guarded)

    return decorator


def current_principal() -> Principal:
    """The principal the decorator put on ``flask.g``; :class:`Unauthorized` outside a guarded view."""
    principal = g.get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized()
    return principal


def _on_http_error(error: HTTPException) -> tuple[Response, int, dict[str, str]]:
    allow = ", ".join(getattr(error, "valid_methods", None) or []) or None
    status, headers, body = http_error_response(error.code or 500, allow=allow)
    return jsonify(body), status, headers


def install(app: Flask) -> Flask:
    """Answer keyturn's errors and HTTP errors of ``app`` in the envelope; returns ``app``."""
    app.register_error_handler(KeyturnError, envelope_response)
    app.register_error_handler(HTTPException, _on_http_error)
    return app
