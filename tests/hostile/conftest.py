"""Hostile-input fixtures: one database by default, and one long-lived app for the pure parsing cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from keyturn.server.app import create_app
from keyturn.settings import load_settings


@pytest.fixture(params=["sqlite"], ids=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Parsing and refusing happen before the database; the tests that reach it choose their own."""
    return str(request.param)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def parser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    """One app for every case that is refused while parsing (so no case depends on another).

    Its request limits are lifted: the cases here are about parsing, and a few hundred
    refused requests from one client would otherwise trip the register limit.
    """
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("hostile"),
        password_profile="test-only-cheap",
        rate_limit_register="100000/hour",
        rate_limit_refresh="100000/minute",
    )
    app = create_app(settings)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keyturn.test") as client,
    ):
        yield client
