"""The client's address behind reverse proxies: ``X-Forwarded-For``, believed only from trusted proxies.

Anyone can send ``X-Forwarded-For``; believing it from an untrusted peer would let a
client pick the address its rate limits are counted against. So the header is read
only when the TCP peer is one of ``KEYTURN_TRUSTED_PROXIES`` (addresses or CIDR
networks), and then from the right: each trusted proxy appended the address it was
connected from, so the first address from the right that is *not* a trusted proxy is
the client. Everything to its left was written by the client and is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["TrustedProxyMiddleware", "client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Hops of X-Forwarded-For looked at, from the right; a longer chain is a client's invention.
MAX_HOPS: Final = 32


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Networks from addresses and CIDRs; raise ValueError naming a malformed one."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """An address from an X-Forwarded-For item; tolerates ``[v6]`` brackets and an IPv4 ``:port``."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str | None:
    """The client's address: the peer, or — if the peer is a trusted proxy — the rightmost untrusted hop.

    When every hop is a trusted proxy, the leftmost is the client; a malformed hop ends the
    walk at the last trusted one (nothing left of it can be believed).
    """
    peer_address = _address(peer) if peer else None
    if peer_address is None or not networks or not _trusted(peer_address, networks):
        return peer
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = peer_address
    for hop in reversed(hops[-MAX_HOPS:]):
        address = _address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, networks):
            break
    return str(client)


class TrustedProxyMiddleware:
    """Sets ``request.state.client_ip`` to the client's address (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, trusted: Sequence[str]) -> None:
        self.app = app
        self.networks = parse_networks(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = scope.get("client")
            forwarded = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-forwarded-for"]
            state = scope.setdefault("state", {})
            state["client_ip"] = client_address(peer[0] if peer else None, forwarded, self.networks)
        await self.app(scope, receive, send)
