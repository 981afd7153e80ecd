"""The resource server's guard: trust keyturn's tokens without calling keyturn per request.

:class:`Guard` verifies with :func:`keyturn.crypto.access_tokens.verify_access_token`,
the auth server's own verifier (one implementation of the rules of CONTRACT.md §3),
against keys from :class:`~keyturn.guard.jwks.JwksCache` — or a shared HMAC secret in
the single-service mode. Every decision is made once, in plain methods; the sync
(:meth:`Guard.verify_sync`, Flask) and async (:meth:`Guard.verify`, ASGI) entry points
only run the network flows those decisions ask for.

Verified tokens are remembered in a bounded LRU keyed on the exact token string;
a hit still checks ``exp`` (with leeway) against the clock and that the signing key
is still published, so the cache changes cost, never the answer. Guards are
stateless: there is no revocation lookup, so an access token stays valid at a
resource server until it expires (15 minutes by default — which is why access
tokens are short-lived); the auth server's own routes do check revocation.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
import httpx
from joserfc.jwk import OctKey

from keyturn.clock import Clock, SystemClock
from keyturn.crypto.access_tokens import UnknownKeyId, VerifyOptions, verify_access_token
from keyturn.crypto.keys import KeyRing, hmac_signing_key, symmetric_key_from_b64
from keyturn.domain.authorization import Principal
from keyturn.durations import parse_duration
from keyturn.errors import ConfigurationError, Unauthorized
from keyturn.guard.api_keys import ApiKeyExchange, ExchangePolicy
from keyturn.guard.jwks import JwksCache, JwksPolicy, check_issuer_url
from keyturn.guard.transport import Flow, run_async, run_sync

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_LEEWAY",
    "Credentials",
    "Guard",
    "GuardTuning",
    "credentials",
]

#: A Flask view function, whatever its signature.
View = TypeVar("View", bound=Callable[..., Any])

DEFAULT_AUDIENCE: Final = "keyturn"
DEFAULT_LEEWAY: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardTuning:
    """Cache sizes and network timings; the defaults suit most resource servers."""

    #: Verified tokens remembered (0 disables the cache). Tokens are at most 8 KiB each.
    token_cache_size: int = 1024
    jwks: JwksPolicy = field(default_factory=JwksPolicy)
    exchange: ExchangePolicy = field(default_factory=ExchangePolicy)
    #: Seconds for any one request to the issuer.
    http_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.token_cache_size < 0 or self.http_timeout <= 0:
            raise ConfigurationError("token_cache_size must be >= 0 and http_timeout positive")


# --- configuration from the environment ------------------------------------


def _env_seconds(name: str, default: float) -> float:
    """Seconds from ``KEYTURN_*``: ``5``, ``5s``, ``2m`` — the server's notation."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return float(parse_duration(raw))
    except ValueError:
        raise ConfigurationError(f"{name} must be seconds, or a number with a unit (s, m, h, d)") from None


def _resolve_issuer(issuer: str | None) -> str:
    value = issuer or os.environ.get("KEYTURN_ISSUER", "").strip()
    if not value:
        raise ConfigurationError("the guard needs the issuer: pass issuer= or set KEYTURN_ISSUER")
    return value


def _decryption_key(value: OctKey | str | None) -> OctKey | None:
    if value is None or isinstance(value, OctKey):
        return value
    return symmetric_key_from_b64(value, purpose="the token decryption key")


# --- credentials ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a request presented: exactly one of a Bearer token or an API key."""

    bearer: str | None = None
    api_key: str | None = None


def credentials(authorization: str | None, api_key: str | None, *, accept_api_key: bool = True) -> Credentials:
    """What the caller presented: a Bearer token, else an API key; :class:`Unauthorized` if neither.

    A non-Bearer ``Authorization`` scheme counts as no credentials (RFC 6750 §3.1).
    """
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return Credentials(bearer=token.strip())
    if accept_api_key and api_key and api_key.strip():
        return Credentials(api_key=api_key.strip())
    raise Unauthorized()


# --- the verified-token cache -----------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires_at: float
    kid: str
    #: The (immutable) key ring the token was verified with: while the guard still holds this very
    #: ring, the signing key is still trusted without looking it up again.
    ring: KeyRing


class _VerifiedTokens:
    """A bounded LRU of verified tokens; a hit is re-checked for expiry and key.

    Hits take no lock: a hit is one ``get`` and one ``move_to_end``, each a single operation on
    the ``OrderedDict`` (atomic under the GIL), so a concurrent thread can at worst evict the entry
    in between -- the hit is still right, only its recency is lost. Insertions, evictions and
    removals of stale entries hold the lock, so the size bound never slips.
    """

    def __init__(self, size: int, leeway: float) -> None:
        self._size = size
        self._leeway = leeway
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str, now: float, ring: KeyRing | None) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry.expires_at <= now - self._leeway or (
            ring is not entry.ring and (ring is None or ring.verification_key(entry.kid) is None)
        ):
            with self._lock:
                self._entries.pop(token, None)
            return None
        try:  # noqa: SIM105 - contextlib.suppress would build a context manager on every hit
            self._entries.move_to_end(token)
        except KeyError:  # evicted by another thread since the get(): still a valid answer
            pass
        return entry.principal

    def put(self, token: str, entry: _Verified) -> None:
        if self._size == 0:
            return
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


@dataclass(frozen=True, slots=True)
class _Refresh:
    """The keys must be fetched (from this generation) before verifying."""

    generation: int


class Guard:
    """Verifies keyturn access tokens at a resource server.

    ``Guard()`` reads ``KEYTURN_ISSUER``, ``KEYTURN_AUDIENCE`` (default ``keyturn``)
    and ``KEYTURN_LEEWAY`` (default 5 s) for what is not passed. Keys come from the
    issuer's discovery document, or ``jwks_url``; with ``secret`` the guard is in
    HMAC mode and fetches nothing. Raises :class:`ConfigurationError` for an unsafe
    or incomplete configuration — at construction, never per request.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        jwks_url: str | None = None,
        leeway: float | None = None,
        api_key_exchange: bool = True,
        secret: bytes | str | None = None,
        algorithm: str = "HS256",
        decryption_key: OctKey | str | None = None,
        previous_decryption_key: OctKey | str | None = None,
        allow_http: bool = False,
        tuning: GuardTuning | None = None,
        clock: Clock | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        keys: KeyRing | None = None,
    ) -> None:
        self.issuer = _resolve_issuer(issuer)
        self.audience = audience or os.environ.get("KEYTURN_AUDIENCE", "").strip() or DEFAULT_AUDIENCE
        self.leeway = _env_seconds("KEYTURN_LEEWAY", DEFAULT_LEEWAY) if leeway is None else float(leeway)
        self.tuning = tuning or GuardTuning()
        self._clock: Clock = clock or SystemClock()
        # The clock is read on every request (cache hits included): the system clock's ``now`` is
        # ``time.time`` itself, so call that directly rather than through a Python method.
        self._now: Callable[[], float] = time.time if type(self._clock) is SystemClock else self._clock.now
        decrypt = _decryption_key(decryption_key)
        if previous_decryption_key is not None and decrypt is None:
            raise ConfigurationError("previous_decryption_key is for replacing a decryption_key: pass both")
        self.options = VerifyOptions(
            issuer=self.issuer,
            audience=self.audience,
            leeway=self.leeway,
            decryption_key=decrypt,
            previous_decryption_key=_decryption_key(previous_decryption_key),
            require_encryption=decrypt is not None,
        )
        self._jwks = self._key_source(jwks_url, secret, algorithm, keys, allow_http)
        self._exchange: ApiKeyExchange | None = None
        if api_key_exchange:
            check_issuer_url(self.issuer, allow_http=allow_http)
            self._exchange = ApiKeyExchange(issuer=self.issuer, clock=self._clock, policy=self.tuning.exchange)
        self._tokens = _VerifiedTokens(self.tuning.token_cache_size, self.leeway)
        self._http = http_client
        self._async_http = async_http_client
        self._sync_lock = threading.Lock()
        self._async_lock: anyio.Lock | None = None

    def _key_source(
        self, jwks_url: str | None, secret: bytes | str | None, algorithm: str, keys: KeyRing | None, allow_http: bool
    ) -> JwksCache:
        if keys is not None:
            return JwksCache.static(keys, clock=self._clock)
        if secret is not None:
            raw = secret.encode("utf-8") if isinstance(secret, str) else secret
            return JwksCache.static(KeyRing([hmac_signing_key(raw, algorithm)]), clock=self._clock)
        check_issuer_url(jwks_url or self.issuer, allow_http=allow_http)
        return JwksCache(
            issuer=self.issuer, jwks_url=jwks_url, policy=self.tuning.jwks, clock=self._clock, allow_http=allow_http
        )

    @property
    def accepts_api_keys(self) -> bool:
        """Whether ``X-API-Key`` is exchanged (``api_key_exchange=True``)."""
        return self._exchange is not None

    # --- the logic, once ------------------------------------------------------

    def _step(self, token: str) -> Principal | _Refresh:
        """Verify ``token``, or say which key refresh must happen first.

        Raises :class:`TokenInvalid`, :class:`TokenExpired` or :class:`ServiceUnavailable`.
        """
        now = self._clock.now()
        hit = self._tokens.get(token, now, self._jwks.current)
        if hit is not None:
            return hit
        generation = self._jwks.due(now)
        if generation is not None:
            return _Refresh(generation)
        try:
            return self._verified(token, now)
        except UnknownKeyId:
            # Perhaps a rotation: refetch, at most once per floor (forged kids cost nothing).
            generation = self._jwks.due_for_unknown_kid(now)
            if generation is None:
                raise
            return _Refresh(generation)

    def _after_refresh(self, token: str) -> Principal:
        """Verify ``token`` with whatever keys the refresh left (no second refresh)."""
        return self._verified(token, self._clock.now())

    def _verified(self, token: str, now: float) -> Principal:
        ring = self._jwks.ring()
        verified = verify_access_token(token, ring, self.options, now=now)
        principal = Principal.from_claims(verified.claims)
        self._tokens.put(token, _Verified(principal, verified.expires_at, verified.kid, ring))
        return principal

    def _api_key_token(self, api_key: str) -> str | Flow[str]:
        """The cached token for ``api_key``, or the flow that exchanges it."""
        if self._exchange is None:  # pragma: no cover - credentials() refuses API keys then
            raise Unauthorized()
        return self._exchange.cached(api_key) or self._exchange.exchange_flow(api_key)

    # --- sync driver (Flask, threads) -----------------------------------------

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.tuning.http_timeout, follow_redirects=False)
        return self._http

    def verify_sync(self, token: str) -> Principal:
        """Verify a Bearer token; blocking. Raises the contract errors (401 family, 503)."""
        step = self._step(token)
        if isinstance(step, Principal):
            return step
        with self._sync_lock:
            run_sync(self._jwks.refresh_flow(step.generation), self._client())
        return self._after_refresh(token)

    def authenticate_sync(self, authorization: str | None, api_key: str | None = None) -> Principal:
        """The principal behind an ``Authorization`` / ``X-API-Key`` header pair; blocking.

        Raises :class:`Unauthorized` when neither carries credentials.
        """
        presented = credentials(authorization, api_key, accept_api_key=self.accepts_api_keys)
        if presented.bearer is not None:
            return self.verify_sync(presented.bearer)
        token = self._api_key_token(str(presented.api_key))
        if not isinstance(token, str):
            token = run_sync(token, self._client())
        return self.verify_sync(token)

    def close(self) -> None:
        """Close the sync HTTP client the guard opened."""
        if self._http is not None:
            self._http.close()

    # --- async driver (ASGI, FastAPI) -------------------------------------------

    def _async_client(self) -> httpx.AsyncClient:
        if self._async_http is None:
            self._async_http = httpx.AsyncClient(timeout=self.tuning.http_timeout, follow_redirects=False)
        return self._async_http

    def cached(self, authorization: str | None) -> Principal | None:
        """The principal of an ``Authorization: Bearer`` token this guard verified before, if still valid.

        The adapters' fast path, before :meth:`authenticate`: a hit re-checks expiry (with leeway)
        and that the signing key is still held, exactly like a hit inside :meth:`verify`; anything
        else -- another scheme, an unknown token, an expired one -- is ``None``, and the caller
        takes the full path, which decides (and raises) as usual.
        """
        if not authorization or (authorization[:7] != "Bearer " and authorization[:7].lower() != "bearer "):
            return None
        return self._tokens.get(authorization[7:].strip(), self._now(), self._jwks.current)

    async def verify(self, token: str) -> Principal:
        """Verify a Bearer token. Raises the contract errors (401 family, 503)."""
        step = self._step(token)
        if isinstance(step, Principal):
            return step
        if self._async_lock is None:
            self._async_lock = anyio.Lock()
        async with self._async_lock:
            await run_async(self._jwks.refresh_flow(step.generation), self._async_client())
        return self._after_refresh(token)

    async def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal:
        """The principal behind an ``Authorization`` / ``X-API-Key`` header pair.

        Raises :class:`Unauthorized` when neither carries credentials.
        """
        presented = credentials(authorization, api_key, accept_api_key=self.accepts_api_keys)
        if presented.bearer is not None:
            return await self.verify(presented.bearer)
        token = self._api_key_token(str(presented.api_key))
        if not isinstance(token, str):
            token = await run_async(token, self._async_client())
        return await self.verify(token)

    async def aclose(self) -> None:
        """Close the HTTP clients the guard opened."""
        if self._async_http is not None:
            await self._async_http.aclose()
        self.close()

    # --- framework adapters (imported only when used) ----------------------------

    def require(self, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> Callable[..., Awaitable[Principal]]:
        """A FastAPI dependency: ``Depends(guard.require(roles=..., scopes=...))`` gives a :class:`Principal`."""
        from keyturn.guard.fastapi import dependency  # noqa: PLC0415 - FastAPI only when used

        return dependency(self, roles=roles, scopes=scopes)

    def flask_required(self, *, roles: Iterable[str] = (), scopes: Iterable[str] = ()) -> Callable[[View], View]:
        """A Flask view decorator: refuses in the envelope, or sets ``flask.g.principal``."""
        from keyturn.guard.flask import required  # noqa: PLC0415 - Flask only when used

        return required(self, roles=roles, scopes=scopes)
