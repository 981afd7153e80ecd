"""Access tokens: issue and verify, over joserfc. The one verifier of keyturn.

The auth server and every guard call :func:`verify_access_token`; there is no
second implementation of the rules of CONTRACT.md §3 / RFC 8725 anywhere. Each
rule is a small function that raises :class:`TokenInvalid` or
:class:`TokenExpired`; joserfc's own errors are translated here and never escape.

Rules, in order: size cap (8 KiB, refused unread) → compact structure, strict
base64url (no padding, no stray characters, canonical final character) → for a
nested token, the JWE header is exactly ``dir``/``A256GCM``/``cty: JWT`` and it
decrypts → the JWS header holds only ``alg``, ``typ`` and ``kid`` (an allow-list:
``jku``, ``x5u``, ``jwk``, ``x5c``, ``crit``, ``b64`` … are refused, never
followed) → ``typ`` is ``at+jwt`` → ``kid`` names a known key → the header ``alg``
equals the algorithm pinned to that key → signature → claims (``iss``, ``aud``,
``exp``, ``iat``, ``nbf`` with leeway; every time a finite number).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from keyturn.crypto.keys import SigningKey
from keyturn.errors import TokenExpired, TokenInvalid

__all__ = [
    "MAX_KID_LENGTH",
    "MAX_TOKEN_BYTES",
    "AccessToken",
    "IssuedToken",
    "KeyLookup",
    "UnknownKeyId",
    "VerifyOptions",
    "issue_access_token",
    "read_header",
    "verify_access_token",
]

#: A token longer than this is refused before any parsing (CONTRACT.md §3).
MAX_TOKEN_BYTES: Final = 8192
#: Longest ``kid`` looked up; anything longer is refused without a lookup or a key refetch.
MAX_KID_LENGTH: Final = 128
TOKEN_TYPE: Final = "at+jwt"
_ACCEPTED_TYP: Final = frozenset({"at+jwt", "application/at+jwt"})
#: The only JWS header members a keyturn token carries (RFC 8725 §3.10: nothing picks its own key).
_ALLOWED_HEADERS: Final = frozenset({"alg", "typ", "kid"})
_REQUIRED_CLAIMS: Final = frozenset({"iss", "sub", "aud", "exp", "iat", "jti"})
#: ``json.loads`` without its per-call argument checks (the same decoder it uses by default).
_JSON: Final = json.JSONDecoder()
_ENCRYPTION_HEADER: Final = {"alg": "dir", "enc": "A256GCM", "cty": "JWT"}
#: Unpadded base64url segments and the dots between them: what RFC 7515 §2 allows in a compact token.
_COMPACT_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
#: Base64url → base64 (the alphabet was checked first), and the last character of a segment whose
#: unused bits are zero, for 2 and 1 implied padding characters (RFC 4648 §3.5: canonical encoding).
_URLSAFE_ALPHABET: Final = bytes.maketrans(b"-_", b"+/")
_CANONICAL_LAST: Final = (b"AEIMQUYcgkosw048", b"AQgw")
#: Integers a float holds exactly (2**53): a time claim within it needs no conversion.
_EXACT_INT: Final = 2**53
_KID: Final = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_KID_LENGTH}}}")
# Everything joserfc or cryptography may raise on hostile input; translated to TokenInvalid.
_FOREIGN_ERRORS: Final = (JoseError, ValueError, TypeError, KeyError, IndexError, OverflowError, AssertionError)


class KeyLookup(Protocol):
    """Finds the verification key named by a ``kid``; ``None`` when unknown."""

    def verification_key(self, kid: str) -> SigningKey | None: ...


class UnknownKeyId(TokenInvalid):
    """The token names a well-formed ``kid`` the verifier does not hold.

    Still ``TOKEN_INVALID`` to the client; the server (key reload) and the guards
    (JWKS refetch) catch it to learn a rotation may have happened, then retry once.
    """

    def __init__(self, kid: str) -> None:
        super().__init__()
        self.kid = kid


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyOptions:
    """What a verifier checks besides the signature."""

    issuer: str
    audience: str
    leeway: float = 5.0
    #: Set to decrypt nested (JWE-wrapped) tokens; without it an encrypted token is refused.
    decryption_key: OctKey | None = None
    #: A decryption key being replaced: tokens it encrypted still decrypt (with ``decryption_key`` set).
    previous_decryption_key: OctKey | None = None
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


#: Checked JWS headers remembered, and the longest segment remembered (see :func:`_checked_header`).
_MAX_CACHED_HEADERS: Final = 256
_MAX_CACHED_HEADER_CHARS: Final = 512
#: Encoded JWS headers of issued tokens remembered (see :func:`_header_segment`).
_MAX_HEADER_SEGMENTS: Final = 64
_JWE_REGISTRY: Final = jwe.JWERegistry(algorithms=["dir", "A256GCM"])


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
    token = _signed_compact(key, json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    if encryption_key is not None:
        token = jwe.encrypt_compact(dict(_ENCRYPTION_HEADER), token, encryption_key, registry=_JWE_REGISTRY)
    return IssuedToken(token=token, jti=jti, expires_at=float(iat + ttl), expires_in=ttl)


def _b64encode(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@functools.lru_cache(maxsize=_MAX_HEADER_SEGMENTS)
def _header_segment(alg: str, kid: str) -> bytes:
    """The encoded JWS header of every token the key ``kid`` signs: ``alg``, ``typ`` and ``kid``, nothing else.

    It is the same for all of a key's tokens, so it is checked and encoded once per key (the most
    recently used :data:`_MAX_HEADER_SEGMENTS`; keys rotate rarely). The check is the verifier's own
    (:func:`_check_header`): a key whose ``kid`` no verifier would accept refuses to sign, rather
    than issue tokens that every guard turns away. Raises ``ValueError`` then.
    """
    header = {"alg": alg, "typ": TOKEN_TYPE, "kid": kid}
    try:
        _check_header(header)
    except TokenInvalid as exc:
        raise ValueError(f"a token signed by key {kid[:MAX_KID_LENGTH]!r} would not verify: malformed kid") from exc
    return _b64encode(json.dumps(header, separators=(",", ":")).encode("ascii"))


def _signed_compact(key: SigningKey, payload: bytes) -> str:
    """``header.payload.signature``, signed with joserfc's algorithm object for the key's pinned algorithm.

    The same token ``jws.serialize_compact`` makes (a test compares them byte for byte where the
    algorithm is deterministic), without re-checking and re-encoding the fixed header and
    resolving the key on every call: ~7 µs of a ~47 µs ES256 token. The signature itself is
    joserfc's algorithm object's, as on the verifying side (:func:`_verified_payload`); that the
    key fits the algorithm was checked when the :class:`SigningKey` was made.
    """
    signing_input = _header_segment(key.alg, key.kid) + b"." + _b64encode(payload)
    signature = key.jws_algorithm.sign(signing_input, key.key)
    return (signing_input + b"." + _b64encode(signature)).decode("ascii")


def _b64decode(segment: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2) of a segment :func:`_segments` returned.

    The same rules as ``joserfc.util.urlsafe_b64decode`` (no padding, no ``+``/``/``, canonical
    last character), with a precomputed translation table (it builds one per call): three
    segments per token, on every first-sight verification. ``_segments`` has already matched the
    whole token against the base64url alphabet (ASCII, no ``+``, ``/`` or ``=``), so only the
    length and the last character are left to check here.
    """
    data = segment.encode("ascii")
    pad = -len(data) % 4
    if pad == 3 or (pad and data[-1] not in _CANONICAL_LAST[pad - 1]):
        raise TokenInvalid()
    try:
        return binascii.a2b_base64(data.translate(_URLSAFE_ALPHABET) + b"=" * pad, strict_mode=True)
    except binascii.Error as exc:
        raise TokenInvalid() from exc


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        # JWS JSON is UTF-8 (RFC 7515 §5.1, RFC 8259 §8.1): decoded as such, never sniffed as UTF-16/32.
        value = _JSON.decode(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TokenInvalid() from exc
    if not isinstance(value, dict):
        raise TokenInvalid()
    return value


def _segments(token: str) -> list[str]:
    """The compact segments, after the size cap and the base64url alphabet check."""
    if len(token) > MAX_TOKEN_BYTES or not token.isascii():
        raise TokenInvalid()
    # Nothing but the alphabet and dots: deleting those must leave nothing (a regex takes ~2.5x longer).
    if token.encode("ascii").translate(None, _COMPACT_ALPHABET):
        raise TokenInvalid()
    parts = token.split(".")
    if len(parts) == 3 and all(parts):
        return parts
    # dir has no encrypted key: a nested token is ``header..iv.ciphertext.tag``.
    if len(parts) == 5 and parts[0] and not parts[1] and all(parts[2:]):
        return parts
    raise TokenInvalid()


def read_header(token: str) -> dict[str, Any]:
    """The unverified JOSE header of a compact token, after the size and shape checks.

    For choosing a key only (a guard learns which ``kid`` to fetch); trusts nothing.
    Raises :class:`TokenInvalid` for anything that is not a compact JWS or ``dir`` JWE.
    """
    return _json_object(_b64decode(_segments(token)[0]))


def _checked_header(segment: str) -> Mapping[str, Any]:
    """The JWS header of ``segment``, parsed and checked against the allow-list (:func:`_check_header`).

    Every token a key signs carries the same header segment, so checked headers are remembered
    by segment: a first-sight verification then skips a base64 and a JSON decode. Only headers
    that passed the checks are kept (a refusal raises, and raising is not remembered), read-only,
    the most recently used :data:`_MAX_CACHED_HEADERS` of at most :data:`_MAX_CACHED_HEADER_CHARS`
    characters each (the memory bound). The ``kid`` is still looked up in the caller's key ring
    on every verification.
    """
    if len(segment) > _MAX_CACHED_HEADER_CHARS:
        return _parsed_header(segment)
    return _remembered_header(segment)


def _parsed_header(segment: str) -> Mapping[str, Any]:
    parsed = _json_object(_b64decode(segment))
    _check_header(parsed)
    return MappingProxyType(parsed)


_remembered_header: Final = functools.lru_cache(maxsize=_MAX_CACHED_HEADERS)(_parsed_header)


def _check_header(header: Mapping[str, Any]) -> None:
    if not _ALLOWED_HEADERS.issuperset(header):
        raise TokenInvalid()
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP:
        raise TokenInvalid()
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        raise TokenInvalid()


def _pinned_key(header: Mapping[str, Any], keys: KeyLookup) -> SigningKey:
    """The key the header's ``kid`` names (checked well formed by :func:`_check_header`), if it pins ``alg``."""
    kid: str = header["kid"]
    key = keys.verification_key(kid)
    if key is None:
        raise UnknownKeyId(kid)
    # The token's alg must be exactly the key's pinned one: this is what defeats
    # alg=none and HMAC-signed-with-the-public-key (RFC 8725 §2.1, §3.1).
    if header.get("alg") != key.alg:
        raise TokenInvalid()
    return key


def _verified_payload(parts: Sequence[str], key: SigningKey) -> bytes:
    """The payload of ``header.payload.signature``, once the signature verifies with ``key``.

    The header was parsed and checked once already, so the signature is verified with joserfc's
    algorithm object directly: ``jws.extract_compact`` + ``validate_compact`` would decode the
    header a second time and re-run generic registry checks that the allow-list above makes
    moot -- about a third of a first-sight ES256 verification's overhead over the bare primitive.
    That the key fits the algorithm was checked when the :class:`SigningKey` was made.
    """
    signature = _b64decode(parts[2])
    try:
        valid = key.jws_algorithm.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature, key.key)
    except _FOREIGN_ERRORS as exc:
        raise TokenInvalid() from exc
    if not valid:
        raise TokenInvalid()
    return _b64decode(parts[1])


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    # The common case first: a JSON integer within float's exact range (bool is not ``int`` here).
    if type(value) is int and -_EXACT_INT < value < _EXACT_INT:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid()
    try:
        number = float(value)
    except OverflowError as exc:
        raise TokenInvalid() from exc
    # NaN compares false with everything: it would never expire nor be "in the future".
    if not math.isfinite(number):
        raise TokenInvalid()
    return number


def _check_claims(claims: Mapping[str, Any], options: VerifyOptions, now: float) -> None:
    if not claims.keys() >= _REQUIRED_CLAIMS:
        raise TokenInvalid()
    if claims["iss"] != options.issuer:
        raise TokenInvalid()
    aud = claims["aud"]
    if not (aud == options.audience or (isinstance(aud, list) and options.audience in aud)):
        raise TokenInvalid()
    if not isinstance(claims["sub"], str) or not claims["sub"] or not isinstance(claims["jti"], str):
        raise TokenInvalid()
    if _number(claims, "iat") > now + options.leeway:
        raise TokenInvalid()
    if "nbf" in claims and _number(claims, "nbf") > now + options.leeway:
        raise TokenInvalid()
    if _number(claims, "exp") <= now - options.leeway:
        raise TokenExpired()


def _unwrap(token: str, parts: list[str], options: VerifyOptions) -> list[str]:
    """The segments of the inner JWS of a nested token (decrypted), or of the token itself."""
    if len(parts) == 3:
        if options.require_encryption:
            raise TokenInvalid()
        return parts
    if options.decryption_key is None or _json_object(_b64decode(parts[0])) != _ENCRYPTION_HEADER:
        raise TokenInvalid()
    inner = _decrypted(token, (options.decryption_key, options.previous_decryption_key))
    try:
        signed = inner.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TokenInvalid() from exc
    inner_parts = _segments(signed)
    if len(inner_parts) != 3:
        raise TokenInvalid()
    return inner_parts


def _decrypted(token: str, keys: Sequence[OctKey | None]) -> bytes:
    """The plaintext of the JWE ``token``, under the first of ``keys`` that opens it."""
    for key in keys:
        if key is None:
            continue
        try:
            return jwe.decrypt_compact(token, key, registry=_JWE_REGISTRY).plaintext or b""
        except _FOREIGN_ERRORS:
            continue
    raise TokenInvalid()


def verify_access_token(token: str, keys: KeyLookup, options: VerifyOptions, *, now: float) -> AccessToken:
    """Return the verified token, or raise :class:`TokenInvalid` / :class:`TokenExpired`.

    :class:`UnknownKeyId` (a ``TokenInvalid``) says the ``kid`` is well formed but
    unknown: the caller may refresh its keys and try once more. Never returns a
    partially checked token and never lets a joserfc error escape.
    """
    parts = _unwrap(token, _segments(token), options)
    header = _checked_header(parts[0])
    key = _pinned_key(header, keys)
    claims = _json_object(_verified_payload(parts, key))
    _check_claims(claims, options, now)
    return AccessToken(claims, key.kid, key.alg)
