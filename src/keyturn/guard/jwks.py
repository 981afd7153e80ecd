"""The issuer's public keys, discovered, cached and refetched without storms.

A guard finds the JWK Set through ``{issuer}/.well-known/openid-configuration``
(or a ``jwks_url`` given outright), keeps it as long as the JWKS response's
``Cache-Control: max-age`` says (clamped to sane bounds), and refetches early only
when a token names a ``kid`` it does not know, at most once per
``unknown_kid_floor`` seconds: forged kids cost an attacker nothing, so they must
cost the issuer nothing either.

When a refetch fails, keys already held keep verifying (a stale key set is better
than refusing every caller while the issuer restarts); with no keys at all the
guard answers :class:`ServiceUnavailable`, never a 401 it cannot justify.

Only asymmetric signature keys are taken from a JWKS, each with its ``alg`` pinned
from the JWK itself: a key without ``alg``, with ``use`` other than ``sig``, with a
symmetric ``kty`` or an algorithm outside keyturn's allow-list is skipped. Header
members of a token (``jku``, ``x5u``, ``jwk``) never lead here: the verifier
refuses them.

:class:`JwksCache` holds state and decisions only; its :meth:`JwksCache.refresh_flow`
is a sans-I/O flow run by :mod:`keyturn.guard.transport` over either client.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.util import urlsafe_b64decode

from keyturn.clock import Clock
from keyturn.crypto.access_tokens import MAX_KID_LENGTH
from keyturn.crypto.keys import ASYMMETRIC_ALGORITHMS, RSA_KEY_BITS, KeyRing, SigningKey
from keyturn.errors import ConfigurationError, ServiceUnavailable
from keyturn.guard.transport import Flow

__all__ = [
    "MAX_JWKS_KEYS",
    "JwksCache",
    "JwksPolicy",
    "cache_lifetime",
    "check_issuer_url",
    "discovery_url",
    "verification_key",
]

log = logging.getLogger("keyturn.guard")

#: A JWK Set with more keys than this is refused whole.
MAX_JWKS_KEYS: Final = 64
_ACCEPT_JSON: Final = {"Accept": "application/json"}
#: The public members of each key type; anything else (a private part) is dropped.
_PUBLIC_MEMBERS: Final = {"RSA": ("kty", "n", "e"), "EC": ("kty", "crv", "x", "y"), "OKP": ("kty", "crv", "x")}


@dataclass(frozen=True, slots=True, kw_only=True)
class JwksPolicy:
    """How long keys are kept and how often the issuer may be asked again (seconds)."""

    #: Lifetime when the JWKS response carries no usable ``Cache-Control``.
    default_ttl: float = 300.0
    #: ``max-age`` is clamped into ``[min_ttl, max_ttl]``: ``no-cache`` must not mean every request.
    min_ttl: float = 5.0
    max_ttl: float = 86400.0
    #: At most one refetch per this many seconds for tokens naming an unknown ``kid``.
    unknown_kid_floor: float = 5.0
    #: After a failed fetch, wait this long before trying again.
    retry_after_failure: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.min_ttl <= self.default_ttl <= self.max_ttl:
            raise ConfigurationError("JWKS lifetimes must satisfy 0 < min_ttl <= default_ttl <= max_ttl")
        if self.unknown_kid_floor <= 0 or self.retry_after_failure <= 0:
            raise ConfigurationError("the unknown-kid floor and the retry delay must be positive")


def discovery_url(issuer: str) -> str:
    """Where an issuer publishes its discovery document (RFC 8414 / OpenID Connect Discovery)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def cache_lifetime(headers: httpx.Headers, policy: JwksPolicy) -> float:
    """Seconds a JWKS response may be used, from ``Cache-Control`` and ``Age``, clamped by ``policy``."""
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        ttl = 0.0
    elif directives.get("max-age", "").isdigit():
        age = headers.get("age", "0")
        ttl = float(directives["max-age"]) - (float(age) if age.isdigit() else 0.0)
    else:
        ttl = policy.default_ttl
    return min(max(ttl, policy.min_ttl), policy.max_ttl)


def _strong_enough(data: Mapping[str, Any]) -> bool:
    """RSA moduli of at least 2048 bits; judged before import, which would only warn."""
    if data.get("kty") != "RSA":
        return True
    n = data.get("n")
    try:
        modulus = int.from_bytes(urlsafe_b64decode(n.encode("ascii")), "big") if isinstance(n, str) else 0
    except (ValueError, UnicodeEncodeError):
        return False
    return modulus.bit_length() >= RSA_KEY_BITS


def verification_key(data: Mapping[str, Any]) -> SigningKey | None:
    """The :class:`SigningKey` a published JWK stands for, or ``None`` if it must not verify anything.

    The algorithm is the JWK's own ``alg``; private members, if an issuer leaked
    any, are dropped before import.
    """
    alg, kid, use, ops = data.get("alg"), data.get("kid"), data.get("use", "sig"), data.get("key_ops")
    if alg not in ASYMMETRIC_ALGORITHMS or not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        return None
    if use != "sig" or (ops is not None and (not isinstance(ops, list) or "verify" not in ops)):
        return None
    if not _strong_enough(data):
        return None
    members = _PUBLIC_MEMBERS.get(str(data.get("kty")))
    if members is None:
        return None
    public = {name: data[name] for name in members if name in data}
    try:
        return SigningKey(kid=kid, alg=alg, key=jwk.import_key(public))
    except (JoseError, ValueError, TypeError, KeyError):  # ValueError: the key does not fit ``alg``
        return None


def _json_document(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 200 response; :class:`ServiceUnavailable` for anything else."""
    if response.status_code != 200:
        log.warning("keyturn guard: %s answered HTTP %d", what, response.status_code)
        raise ServiceUnavailable()
    try:
        document = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        document = None
    if not isinstance(document, dict):
        log.warning("keyturn guard: %s is not a JSON object", what)
        raise ServiceUnavailable()
    return document


def _http_url(value: object, *, allow_http: bool) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and bool(parts.hostname) and (allow_http or _is_loopback(parts.hostname))


def _is_loopback(host: str | None) -> bool:
    return host in ("localhost", "::1") or (host or "").startswith("127.")


def check_issuer_url(url: str, *, allow_http: bool) -> None:
    """Refuse an issuer (or JWKS) URL keys could be swapped on the way from.

    Plain ``http`` is accepted for loopback hosts, or anywhere with ``allow_http``.
    Raises :class:`ConfigurationError`.
    """
    if not _http_url(url, allow_http=allow_http):
        raise ConfigurationError(
            f"{url!r} is not an https URL; plain http is only trusted on loopback unless allow_http=True"
        )


class JwksCache:
    """The current verification keys of one issuer, and when to ask for them again.

    Not thread-safe on its own: the guard runs :meth:`refresh_flow` under a lock and
    passes the ``generation`` it decided on, so callers that queued behind a refresh
    do not repeat it.
    """

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None,
        policy: JwksPolicy,
        clock: Clock,
        allow_http: bool = False,
    ) -> None:
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._policy = policy
        self._clock = clock
        self._allow_http = allow_http
        self._ring: KeyRing | None = None
        self._fresh_until = -math.inf
        self._next_attempt = -math.inf
        self._next_miss_refetch = -math.inf
        self._generation = 0

    @classmethod
    def static(cls, ring: KeyRing, *, clock: Clock) -> JwksCache:
        """A cache that never fetches: the keys are given (HMAC mode, tests)."""
        cache = cls(issuer="", jwks_url=None, policy=JwksPolicy(), clock=clock)
        cache._ring = ring
        cache._fresh_until = cache._next_attempt = cache._next_miss_refetch = math.inf
        return cache

    @property
    def current(self) -> KeyRing | None:
        """The keys held now, if any (stale or not)."""
        return self._ring

    def ring(self) -> KeyRing:
        """The keys to verify with; :class:`ServiceUnavailable` if none could ever be fetched."""
        if self._ring is None:
            raise ServiceUnavailable()
        return self._ring

    def due(self, now: float) -> int | None:
        """The generation to refresh from when the keys are stale (or absent), else ``None``."""
        if now >= self._fresh_until and now >= self._next_attempt:
            return self._generation
        return None

    def due_for_unknown_kid(self, now: float) -> int | None:
        """The generation to refresh from for a token naming an unknown kid, within the floor."""
        if now >= self._next_miss_refetch and now >= self._next_attempt:
            return self._generation
        return None

    def refresh_flow(self, generation: int) -> Flow[None]:
        """Fetch the JWKS (discovering it first if need be) unless someone already did.

        A failure keeps the keys held so far; with none held, it raises
        :class:`ServiceUnavailable` to the caller that asked.
        """
        if generation != self._generation:
            return
        now = self._clock.now()
        self._generation += 1
        self._next_miss_refetch = now + self._policy.unknown_kid_floor
        try:
            if self._jwks_url is None:
                self._jwks_url = self._discovered(_json_document((yield self._discovery_request()), "discovery"))
            response = yield httpx.Request("GET", self._jwks_url, headers=_ACCEPT_JSON)
            self._install(_json_document(response, "the JWKS"), cache_lifetime(response.headers, self._policy), now)
        except ServiceUnavailable:
            self._next_attempt = now + self._policy.retry_after_failure
            if self._ring is None:
                raise

    def _discovery_request(self) -> httpx.Request:
        return httpx.Request("GET", discovery_url(self._issuer), headers=_ACCEPT_JSON)

    def _discovered(self, document: Mapping[str, Any]) -> str:
        # RFC 8414 §3.3: the document must name the very issuer it was fetched for.
        jwks_uri = document.get("jwks_uri")
        if document.get("issuer") != self._issuer or not _http_url(jwks_uri, allow_http=self._allow_http):
            log.error("keyturn guard: the discovery document does not match issuer %s", self._issuer)
            raise ServiceUnavailable()
        return str(jwks_uri)

    def _install(self, document: Mapping[str, Any], ttl: float, now: float) -> None:
        entries = document.get("keys")
        if not isinstance(entries, list) or len(entries) > MAX_JWKS_KEYS:
            log.warning("keyturn guard: the JWKS has no usable 'keys' list")
            raise ServiceUnavailable()
        keys = [key for key in map(_entry_key, entries) if key is not None]
        self._ring = KeyRing(keys)
        self._fresh_until = now + ttl
        self._next_attempt = -math.inf


def _entry_key(entry: object) -> SigningKey | None:
    return verification_key(entry) if isinstance(entry, dict) else None
