"""``X-API-Key`` at a resource server: exchanged once for an access token, then cached.

A guard never checks an API key itself (it holds no database). It asks the issuer,
``POST {issuer}/auth/token {"api_key": ...}`` (CONTRACT.md §2), and verifies the
access token it gets back like any other, so a resource server still only verifies
JWTs. The token is kept until ``margin`` seconds before it expires, keyed by a hash
of the API key (the key itself is not kept as a dictionary key), in a bounded LRU.

A refusal from the issuer (unknown, revoked or expired key) is remembered for
``negative_ttl`` seconds, so a client retrying a bad key in a loop does not turn
every request into a call to the issuer. A revoked API key keeps working at a
resource server until its cached token expires: guards are stateless.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import httpx

from keyturn.clock import Clock
from keyturn.errors import (
    ConfigurationError,
    Forbidden,
    KeyturnError,
    RateLimited,
    ServiceUnavailable,
    TokenExpired,
    TokenInvalid,
)
from keyturn.guard.transport import Flow

__all__ = ["MAX_API_KEY_LENGTH", "ApiKeyExchange", "ExchangePolicy", "token_endpoint"]

#: Longer values are refused without asking the issuer.
MAX_API_KEY_LENGTH: Final = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class ExchangePolicy:
    """How exchanged tokens and refusals are remembered."""

    #: Exchange again this many seconds before the cached token expires (capped at half its life).
    margin: float = 30.0
    #: Remember a refusal this long.
    negative_ttl: float = 10.0
    #: At most this many API keys are remembered (least recently used go first).
    size: int = 1024

    def __post_init__(self) -> None:
        if self.margin < 0 or self.negative_ttl < 0 or self.size < 1:
            raise ConfigurationError("the exchange margin and negative TTL must be >= 0 and the size >= 1")


@dataclass(frozen=True, slots=True)
class _Entry:
    until: float
    token: str | None = None
    error: KeyturnError | None = None


def token_endpoint(issuer: str) -> str:
    """The issuer's API-key exchange endpoint."""
    return issuer.rstrip("/") + "/auth/token"


def _fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def _refusal(response: httpx.Response) -> KeyturnError:
    """The guard's answer for an issuer that did not hand out a token."""
    if response.status_code == 429:
        retry = response.headers.get("retry-after", "1")
        return RateLimited(retry_after=int(retry) if retry.isdigit() else 1)
    if response.status_code == 403:
        return Forbidden()
    if response.status_code in (400, 401, 404, 422):
        code = _error_code(response)
        return TokenExpired() if code == "TOKEN_EXPIRED" else TokenInvalid("The API key is not valid.")
    return ServiceUnavailable()


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _granted(response: httpx.Response) -> tuple[str, float]:
    """``(access_token, expires_in)`` from a 200 answer; :class:`ServiceUnavailable` if malformed."""
    try:
        data: Any = json.loads(response.content)["data"]
        token, expires_in = data["access_token"], data["expires_in"]
    except (ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
        raise ServiceUnavailable() from None
    if not isinstance(token, str) or isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        raise ServiceUnavailable()
    return token, float(expires_in)


class ApiKeyExchange:
    """Turns API keys into access tokens through the issuer, remembering the answers."""

    def __init__(self, *, issuer: str, clock: Clock, policy: ExchangePolicy) -> None:
        self._url = token_endpoint(issuer)
        self._clock = clock
        self._policy = policy
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, api_key: str) -> str | None:
        """The remembered token for ``api_key``; re-raises a remembered refusal; ``None`` if unknown."""
        fingerprint = _fingerprint(api_key)
        with self._lock:
            entry = self._entries.get(fingerprint)
            if entry is None:
                return None
            if entry.until <= self._clock.now():
                del self._entries[fingerprint]
                return None
            self._entries.move_to_end(fingerprint)
        if entry.error is not None:
            raise type(entry.error)(entry.error.message)
        return entry.token

    def exchange_flow(self, api_key: str) -> Flow[str]:
        """Ask the issuer for a token for ``api_key``; raise the contract error if it refuses."""
        if not 0 < len(api_key) <= MAX_API_KEY_LENGTH or not api_key.isascii() or not api_key.isprintable():
            raise TokenInvalid("The API key is not valid.")
        now = self._clock.now()
        response = yield httpx.Request("POST", self._url, json={"api_key": api_key})
        if response.status_code != 200:
            error = _refusal(response)
            if isinstance(error, TokenInvalid | TokenExpired | Forbidden):
                self._remember(api_key, _Entry(until=now + self._policy.negative_ttl, error=error))
            raise error
        token, expires_in = _granted(response)
        margin = min(self._policy.margin, expires_in / 2)
        self._remember(api_key, _Entry(until=now + expires_in - margin, token=token))
        return token

    def _remember(self, api_key: str, entry: _Entry) -> None:
        with self._lock:
            self._entries[_fingerprint(api_key)] = entry
            self._entries.move_to_end(_fingerprint(api_key))
            while len(self._entries) > self._policy.size:
                self._entries.popitem(last=False)
