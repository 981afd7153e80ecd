"""A user's code that must type-check under ``mypy --strict`` (run by `make test`).

It is not collected by pytest: it proves the public surface is typed as documented,
so a signature change that would break users' type checks breaks ours first.
"""

from __future__ import annotations

from typing import Annotated, assert_type

from fastapi import Depends, FastAPI
from flask import Flask, g

import keyturn
from keyturn.guard import Guard, GuardMiddleware, Principal, TokenExpired, TokenInvalid, require
from keyturn.testing import TokenFactory


def typed_guard() -> Guard:
    guard = Guard(issuer="https://auth.example.com", audience="orders")
    assert_type(guard.verify_sync("token"), Principal)
    return guard


def fastapi_app(guard: Guard) -> FastAPI:
    app = FastAPI()

    reader = Annotated[Principal, Depends(guard.require(scopes=["orders:read"]))]

    @app.get("/orders")
    async def orders(principal: reader) -> dict[str, str]:
        assert_type(principal.sub, str)
        assert_type(principal.scopes, frozenset[str])
        return {"owner": principal.sub}

    return app


def flask_app(guard: Guard) -> Flask:
    app = Flask(__name__)

    @app.get("/orders")
    @guard.flask_required(roles=["admin"])
    def orders() -> dict[str, str]:
        principal: Principal = g.principal
        return {"owner": principal.sub}

    return app


def asgi(guard: Guard, app: FastAPI) -> GuardMiddleware:
    return GuardMiddleware(app, guard, scopes=["orders:read"])


def predicates(principal: Principal) -> Principal:
    return require(principal, roles=["admin"], scopes=["orders:write"])


def errors_carry_their_code(error: keyturn.KeyturnError) -> tuple[str, int]:
    assert_type(TokenExpired.code, str)
    assert_type(TokenInvalid.status, int)
    return error.code, error.status


def minting() -> str:
    tokens = TokenFactory(audience="orders")
    token: str = tokens.mint("user-1", roles=["admin"], scopes=["orders:read"], expires_in=60)
    return token
