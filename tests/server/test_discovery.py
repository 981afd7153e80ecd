"""Discovery, health and the API description: what standard clients and operators rely on."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from keyturn.server.app import ROUTERS
from tests.conftest import ClientFactory, SettingsFactory

pytestmark = pytest.mark.anyio


async def test_jwks_publishes_public_keys_only(client: httpx.AsyncClient) -> None:
    """Each JWK carries kid, alg and use=sig, no private member, and a cache lifetime."""
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    keys = response.json()["keys"]
    assert keys
    for key in keys:
        assert (key["alg"], key["use"], key["kty"], key["crv"]) == ("ES256", "sig", "EC", "P-256")
        assert key["kid"]
        assert "d" not in key


async def test_openid_configuration(client: httpx.AsyncClient) -> None:
    """The discovery document points standard clients at the issuer and the JWKS."""
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == "http://keyturn.test"
    assert doc["jwks_uri"] == "http://keyturn.test/.well-known/jwks.json"
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]


async def test_keys_survive_restarts(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """Keys are created on first start and reused afterwards: restarts log nobody out."""
    settings = make_settings()
    async with make_client(settings) as client:
        first = (await client.get("/.well-known/jwks.json")).json()
    async with make_client(settings) as client:
        second = (await client.get("/.well-known/jwks.json")).json()
    assert first == second


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    """Liveness answers without I/O; readiness checks the database."""
    assert (await client.get("/healthz")).json() == {"success": True, "data": {"status": "ok", "checks": {}}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["data"]["checks"]["database"] == "ok"


async def test_openapi_describes_every_endpoint(client: httpx.AsyncClient) -> None:
    """/openapi.json lists the contract's endpoints and /docs serves the viewer."""
    spec = (await client.get("/openapi.json")).json()
    for path in (
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/logout-all",
        "/auth/me",
        "/auth/sessions",
        "/auth/sessions/{session_id}",
        "/auth/password",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/healthz",
        "/readyz",
    ):
        assert path in spec["paths"], path
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_openapi_documents_the_error_envelope_on_every_operation(client: httpx.AsyncClient) -> None:
    """Every operation documents the contract's error answers with the envelope, not FastAPI's default.

    The routes are served flat (app.py ``_serve_flat``), so each router must declare them: a
    router that forgot would show FastAPI's ``HTTPValidationError`` for 422 and no 401/503.
    """
    spec = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status in ("401", "403", "404", "409", "413", "422", "429", "503"):
                body = operation["responses"][status]["content"]["application/json"]["schema"]
                assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)

    # The same document as FastAPI's own include_router builds from the same routers.
    reference = FastAPI(title=spec["info"]["title"], version=spec["info"]["version"], summary=spec["info"]["summary"])
    for router in ROUTERS:
        reference.include_router(router)
    assert spec == json.loads(json.dumps(reference.openapi()))


async def test_routes_are_served_flat(client: httpx.AsyncClient) -> None:
    """No route is reached through a nested router node: each request matches the app's own table.

    FastAPI's ``include_router`` nodes cost every request a walk (about 40% of /healthz's CPU,
    docs/performance.md). The route table still answers every endpoint, and unknown paths and
    wrong methods get the contract's answers.
    """
    app = client.app  # type: ignore[attr-defined]
    assert all(isinstance(route, APIRoute | Route) for route in app.routes), app.routes
    assert (await client.get("/healthz")).status_code == 200
    missing = await client.get("/auth/nowhere")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
    wrong = await client.get("/auth/refresh")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (404, "NOT_FOUND")
    assert wrong.headers["allow"] == "POST"
