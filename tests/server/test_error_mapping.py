"""Bad requests get the contract's envelope and a 4xx, never a 500 or a framework's own body."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ClientFactory, SettingsFactory, assert_error

pytestmark = pytest.mark.anyio


async def test_unknown_route_is_not_found(client: httpx.AsyncClient) -> None:
    """An unknown path answers NOT_FOUND in the envelope."""
    assert_error(await client.get("/no/such/thing"), 404, "NOT_FOUND")


async def test_wrong_method_keeps_the_envelope(client: httpx.AsyncClient) -> None:
    """A wrong method is NOT_FOUND in the envelope (the contract has no 405 code), with Allow."""
    response = await client.get("/auth/login")
    assert_error(response, 404, "NOT_FOUND")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[]", "application/json"),
        (b'"text"', "application/json"),
        (b"email=a&password=b", "application/x-www-form-urlencoded"),
        (b"hello", "text/plain"),
        (b"", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
    ],
    ids=["malformed", "array", "string", "form", "text", "empty", "not-utf8"],
)
async def test_malformed_bodies_are_validation_errors(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    """Whatever arrives instead of the JSON object is a 422 VALIDATION_ERROR."""
    response = await client.post("/auth/login", content=content, headers={"content-type": content_type})
    assert_error(response, 422, "VALIDATION_ERROR")


async def test_body_over_the_limit_is_refused_before_parsing(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """A body over KEYTURN_BODY_LIMIT is a 413 PAYLOAD_TOO_LARGE."""
    async with make_client(make_settings(body_limit=2048)) as client:
        response = await client.post(
            "/auth/register", content=b"{" + b" " * 4096 + b"}", headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_database_errors_become_503(make_client: ClientFactory, make_settings: SettingsFactory) -> None:
    """An unreachable database is SERVICE_UNAVAILABLE, never a 500."""
    async with make_client(make_settings()) as client:
        services = client.app.state.services  # type: ignore[attr-defined]
        await services.db.engine.dispose()
        from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

        services.db.engine = create_async_engine(
            "postgresql+asyncpg://nobody@127.0.0.1:1/none", connect_args={"timeout": 1}
        )
        response = await client.post("/auth/login", json={"email": "a@example.com", "password": "whatever"})
        assert_error(response, 503, "SERVICE_UNAVAILABLE")
        assert_error(await client.get("/readyz"), 503, "SERVICE_UNAVAILABLE")
