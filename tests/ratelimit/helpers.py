"""Helpers of the rate-limit tests: requests from chosen client addresses."""

from __future__ import annotations

import httpx

from tests.conftest import PASSWORD

#: The test client's TCP address; trusted as a proxy so tests can speak for other clients.
PROXY = "203.0.113.7"
WRONG = "not the right password"


def from_ip(ip: str) -> dict[str, str]:
    """Headers making the request come from ``ip`` (through the trusted test proxy)."""
    return {"X-Forwarded-For": ip}


async def attempt(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, *, ip: str | None = None
) -> httpx.Response:
    """One login attempt, optionally from another client address."""
    headers = from_ip(ip) if ip else None
    return await client.post("/auth/login", json={"email": email, "password": password}, headers=headers)
