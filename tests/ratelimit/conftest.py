"""Rate-limit fixtures: one database (limits do not live there), both limit storages, clients by address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REDIS_URL
from tests.redis_fleet.support import redis_namespace


@pytest.fixture(params=["sqlite"], ids=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Limits are kept in memory or Redis, never in the database: one database suffices."""
    return str(request.param)


@pytest.fixture(params=["memory", "redis"], ids=["memory", "redis"])
def limits_storage(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings overrides selecting the limits' storage; Redis gets a private key prefix."""
    if request.param == "memory":
        yield {}
        return
    with redis_namespace() as prefix:
        yield {"redis_url": REDIS_URL, "redis_prefix": prefix}
