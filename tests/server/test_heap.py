"""The started server's heap: what it built at startup is left out of garbage collection while it serves.

A full collection stops the event loop for as long as it walks the heap; a started server's
startup objects made that 60-80 ms (docs/performance.md). These tests pin the behaviour, not
the timing: while the app serves, its startup objects are frozen; once it stops, they are not.
The shared ``make_client`` fixture turns freezing off (tests/conftest.py), so these build the
app with its default.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from keyturn.server.app import create_app
from tests.conftest import SettingsFactory

pytestmark = pytest.mark.anyio


def _tracked(obj: object) -> bool:
    """Whether a collection would walk ``obj`` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


@asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://keyturn.test") as client,
    ):
        yield client


async def test_startup_objects_are_frozen_while_serving_and_handed_back_at_shutdown(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(make_settings())
    assert _tracked(app.router)
    async with _serving(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert gc.get_freeze_count() > 0
        assert not _tracked(app.router), "the app's router, built at startup, is walked by every collection"
        made_while_serving: list[object] = [object()]
        assert _tracked(made_while_serving), "objects made while serving are collected as usual"
    assert _tracked(app.router), "after shutdown the app can be collected again"


async def test_an_app_built_not_to_freeze_leaves_the_heap_alone(make_settings: SettingsFactory) -> None:
    """The opt-out the shared fixture uses: nothing frozen while serving."""
    app = create_app(make_settings(), freeze_startup_heap=False)
    async with _serving(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert _tracked(app.router)
