"""The client address behind proxies: X-Forwarded-For believed only from trusted peers, read from the right."""

from __future__ import annotations

import pytest

from keyturn.errors import ConfigurationError
from keyturn.server.proxies import client_address, parse_networks
from tests.conftest import ClientFactory, SettingsFactory, assert_error, register
from tests.ratelimit.helpers import PROXY, WRONG, attempt

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8::/32", "203.0.113.7"])


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("198.51.100.1", ["6.6.6.6"], "198.51.100.1"),
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["6.6.6.6, 198.51.100.1, 10.0.0.2"], "198.51.100.1"),
        ("10.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        ("10.0.0.1", ["198.51.100.1, not-an-ip, 10.0.0.2"], "10.0.0.2"),
        ("10.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
        ("10.0.0.1", ["[2001:db9::1]:443"], "2001:db9::1"),
        ("2001:db8::5", ["2001:db9::1"], "2001:db9::1"),
        ("::ffff:10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("203.0.113.7", [" 198.51.100.1 ,"], "198.51.100.1"),
        (None, ["198.51.100.1"], None),
    ],
    ids=[
        "untrusted-peer-ignores-header",
        "trusted-peer-no-header",
        "one-hop",
        "rightmost-untrusted-wins",
        "several-headers-concatenate",
        "all-trusted-leftmost",
        "malformed-hop-stops-at-last-trusted",
        "ipv4-with-port",
        "bracketed-ipv6-with-port",
        "ipv6-proxy",
        "ipv4-mapped-peer",
        "whitespace-and-empty-items",
        "no-peer",
    ],
)
def test_client_address(peer: str | None, headers: list[str], expected: str | None) -> None:
    """Each proxy appended its peer; the first untrusted address from the right is the client."""
    assert client_address(peer, headers, TRUSTED) == expected


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    """With KEYTURN_TRUSTED_PROXIES empty (the default) the TCP peer is the client."""
    assert client_address("10.0.0.1", ["198.51.100.1"], ()) == "10.0.0.1"


def test_a_malformed_trusted_proxy_refuses_to_start(make_settings: SettingsFactory) -> None:
    """A typo in KEYTURN_TRUSTED_PROXIES is a configuration error, not a silently open door."""
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXIES"):
        make_settings(trusted_proxies=["10.0.0.0/8", "proxy.internal"])


@pytest.mark.anyio
async def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_escape_the_lock(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """A client rotating X-Forwarded-For values is still counted at its own address."""
    async with make_client(make_settings()) as client:
        await register(client)
        for n in range(5):
            assert_error(await attempt(client, "alice@example.com", WRONG, ip=f"6.6.6.{n}"), 401, "INVALID_CREDENTIALS")
        assert_error(await attempt(client, "alice@example.com", ip="6.6.6.99"), 429, "RATE_LIMITED")


@pytest.mark.anyio
async def test_sessions_record_the_forwarded_address(
    make_client: ClientFactory, make_settings: SettingsFactory
) -> None:
    """Behind a trusted proxy, the session shows the client's address, not the proxy's."""
    async with make_client(make_settings(trusted_proxies=[PROXY])) as client:
        await register(client)
        token = (await attempt(client, "alice@example.com", ip="198.51.100.44")).json()["data"]["access_token"]
        sessions = await client.get("/auth/sessions", headers={"Authorization": f"Bearer {token}"})
        assert [s["ip"] for s in sessions.json()["data"]["sessions"]] == ["198.51.100.44"]
