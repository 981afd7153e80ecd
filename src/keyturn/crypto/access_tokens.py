"""Access tokens: issue and verify, over joserfc. The one verifier of keyturn.

The auth server and every guard call :func:`verify_access_token`; there is no
second implementation of the rules of CONTRACT.md §3 / RFC 8725 anywhere. Each
rule is a small function that raises :class:`TokenInvalid` or
:class:`TokenExpired`; joserfc's own errors are translated here and never escape.

Rules, in order: size cap (8 KiB, refused unread) → compact structure → header
allow-list (no ``jku``/``x5u``/``jwk``/``x5c``, no ``crit``) → ``typ`` → ``kid``
names a known key → the header ``alg`` equals the algorithm pinned to that key →
signature → claims (``iss``, ``aud``, ``exp``, ``iat``, ``nbf`` with leeway).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from joserfc import jwe, jws
from joserfc._rfc7515.registry import JWSRegistry
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from keyturn.crypto.keys import SigningKey
from keyturn.errors import TokenExpired, TokenInvalid

__all__ = [
    "MAX_TOKEN_BYTES",
    "AccessToken",
    "IssuedToken",
    "KeyLookup",
    "VerifyOptions",
    "issue_access_token",
    "read_header",
    "verify_access_token",
]

#: A token longer than this is refused before any parsing (CONTRACT.md §3).
MAX_TOKEN_BYTES: Final = 8192
MAX_KID_LENGTH: Final = 128
TOKEN_TYPE: Final = "at+jwt"
_ACCEPTED_TYP: Final = frozenset({"at+jwt", "application/at+jwt"})
#: Header members that would let a token choose its own key (RFC 8725 §3.10).
_FORBIDDEN_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit"})
_REQUIRED_CLAIMS: Final = ("iss", "sub", "aud", "exp", "iat", "jti")
_ENCRYPTION_HEADER: Final = {"alg": "dir", "enc": "A256GCM", "cty": "JWT"}


class KeyLookup(Protocol):
    """Finds the verification key named by a ``kid``; ``None`` when unknown."""

    def verification_key(self, kid: str) -> SigningKey | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyOptions:
    """What a verifier checks besides the signature."""

    issuer: str
    audience: str
    leeway: float = 5.0
    #: Set to decrypt nested (JWE-wrapped) tokens; without it an encrypted token is refused.
    decryption_key: OctKey | None = None
    #: Refuse plain signed tokens (the encrypted-only mode).
    require_encryption: bool = False


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token: its claims, and the key that vouched for them."""

    claims: Mapping[str, Any]
    kid: str
    alg: str

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def session_id(self) -> str | None:
        sid = self.claims.get("sid")
        return str(sid) if sid is not None else None

    @property
    def token_id(self) -> str:
        return str(self.claims["jti"])

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])

    @property
    def roles(self) -> tuple[str, ...]:
        roles = self.claims.get("roles", [])
        return tuple(str(r) for r in roles) if isinstance(roles, list) else ()

    @property
    def scopes(self) -> frozenset[str]:
        scope = self.claims.get("scope", "")
        return frozenset(scope.split()) if isinstance(scope, str) else frozenset()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed token with the facts the issuer needs to remember about it."""

    token: str
    jti: str
    expires_at: float
    expires_in: int


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    ttl: int,
    now: float,
    session_id: str | None = None,
    client_id: str = "keyturn",
    email: str | None = None,
    roles: Sequence[str] = (),
    scope: str = "",
    encryption_key: OctKey | None = None,
) -> IssuedToken:
    """Sign an RFC 9068 access token with ``key``; wrap it in a JWE when ``encryption_key`` is given."""
    iat = int(now)
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": iat + ttl,
        "iat": iat,
        "jti": jti,
        "client_id": client_id,
        "roles": list(roles),
        "scope": scope,
    }
    if session_id is not None:
        claims["sid"] = session_id
    if email is not None:
        claims["email"] = email
    header = {"alg": key.alg, "typ": TOKEN_TYPE, "kid": key.kid}
    payload = json.dumps(claims, separators=(",", ":"))
    token = jws.serialize_compact(header, payload, key.key, algorithms=[key.alg])
    if encryption_key is not None:
        token = jwe.encrypt_compact(dict(_ENCRYPTION_HEADER), token, encryption_key)
    return IssuedToken(token=token, jti=jti, expires_at=float(iat + ttl), expires_in=ttl)


def _b64decode(segment: str) -> bytes:
    if "=" in segment:
        raise TokenInvalid()
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid() from exc


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TokenInvalid() from exc
    if not isinstance(value, dict):
        raise TokenInvalid()
    return value


def _check_size(token: str) -> None:
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise TokenInvalid()


def read_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header of a compact token, after the size and shape checks.

    For choosing a key only (a guard learns which ``kid`` to fetch); trusts nothing.
    """
    _check_size(token)
    parts = token.split(".")
    if len(parts) not in (3, 5) or not all(parts[:2]):
        raise TokenInvalid()
    return _json_object(_b64decode(parts[0]))


def _check_header(header: Mapping[str, Any]) -> None:
    if _FORBIDDEN_HEADERS.intersection(header):
        raise TokenInvalid()
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP:
        raise TokenInvalid()


def _pinned_key(header: Mapping[str, Any], keys: KeyLookup) -> SigningKey:
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise TokenInvalid()
    key = keys.verification_key(kid)
    # The token's alg must be exactly the key's pinned one: this is what defeats
    # alg=none and HMAC-signed-with-the-public-key (RFC 8725 §2.1, §3.1).
    if key is None or header.get("alg") != key.alg:
        raise TokenInvalid()
    return key


_REGISTRIES: dict[str, JWSRegistry] = {}


def _registry(alg: str) -> JWSRegistry:
    registry = _REGISTRIES.get(alg)
    if registry is None:
        registry = _REGISTRIES[alg] = JWSRegistry(algorithms=[alg])
    return registry


def _verified_payload(token: str, key: SigningKey) -> bytes:
    registry = _registry(key.alg)
    try:
        obj = jws.extract_compact(token.encode("ascii"), registry=registry)
        if not jws.validate_compact(obj, key.key, registry=registry):
            raise TokenInvalid()
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise TokenInvalid() from exc
    return obj.payload


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid()
    return float(value)


def _check_claims(claims: Mapping[str, Any], options: VerifyOptions, now: float) -> None:
    if any(name not in claims for name in _REQUIRED_CLAIMS):
        raise TokenInvalid()
    if claims["iss"] != options.issuer:
        raise TokenInvalid()
    aud = claims["aud"]
    if not (aud == options.audience or (isinstance(aud, list) and options.audience in aud)):
        raise TokenInvalid()
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise TokenInvalid()
    if _number(claims, "iat") > now + options.leeway:
        raise TokenInvalid()
    if "nbf" in claims and _number(claims, "nbf") > now + options.leeway:
        raise TokenInvalid()
    if _number(claims, "exp") <= now - options.leeway:
        raise TokenExpired()


def _unwrap(token: str, header: Mapping[str, Any], options: VerifyOptions) -> str:
    if token.count(".") == 2:
        if options.require_encryption:
            raise TokenInvalid()
        return token
    if options.decryption_key is None or dict(header) != _ENCRYPTION_HEADER:
        raise TokenInvalid()
    try:
        inner = jwe.decrypt_compact(token, options.decryption_key, algorithms=["dir", "A256GCM"])
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise TokenInvalid() from exc
    return (inner.plaintext or b"").decode("ascii", errors="replace")


def verify_access_token(token: str, keys: KeyLookup, options: VerifyOptions, *, now: float) -> AccessToken:
    """Return the verified token, or raise :class:`TokenInvalid` / :class:`TokenExpired`.

    Never returns a partially checked token and never lets a joserfc error escape.
    """
    header = read_header(token)
    signed = _unwrap(token, header, options)
    if signed is not token:
        header = read_header(signed)
        if signed.count(".") != 2:
            raise TokenInvalid()
    _check_header(header)
    key = _pinned_key(header, keys)
    claims = _json_object(_verified_payload(signed, key))
    _check_claims(claims, options, now)
    return AccessToken(claims=claims, kid=key.kid, alg=key.alg)
