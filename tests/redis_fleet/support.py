"""A Redis key prefix per test, removed afterwards (the machine's real Redis is shared)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.exceptions import RedisError

from tests.conftest import REDIS_URL, unavailable

__all__ = ["redis_namespace"]


@contextmanager
def redis_namespace() -> Iterator[str]:
    """A fresh ``KEYTURN_REDIS_PREFIX``; every key under it is deleted on exit."""
    prefix = f"kt-test-{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        client.close()
        unavailable("Redis", str(exc))
    try:
        yield prefix
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
