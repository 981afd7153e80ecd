"""Signing keys and the key ring.

A :class:`SigningKey` pins exactly one JWS algorithm to one key and one ``kid``;
verification looks the key up by ``kid`` and uses *its* algorithm, never the
token's word for it (RFC 8725 §3.1). The :class:`KeyRing` is ordered: the newest
``current`` key signs, and every published key verifies until it is dropped.

Private keys are exported as JWK JSON, optionally sealed with a key-encryption key
(JWE ``dir`` + ``A256GCM``) so the database never holds them in clear.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from joserfc import jwe, jwk, jws
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import Key, OctKey

from keyturn.errors import ConfigurationError

__all__ = [
    "ALGORITHMS",
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "KeyChange",
    "KeyRing",
    "KeyState",
    "SigningKey",
    "generate_signing_key",
    "hmac_signing_key",
    "is_sealed",
    "load_private_jwk",
    "resealed_private_jwk",
    "seal_private_jwk",
    "symmetric_key_from_b64",
]

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
#: Every algorithm keyturn signs or verifies with. ``none`` is never among them.
ALGORITHMS: Final = HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS

#: Shortest HMAC secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
MIN_HMAC_SECRET_BYTES: Final = 32
RSA_KEY_BITS: Final = 2048

KeyState = Literal["next", "current", "retired"]

_EC_CURVES: Final[dict[str, Literal["P-256", "P-384", "P-521"]]] = {
    "ES256": "P-256",
    "ES384": "P-384",
    "ES512": "P-521",
}
_HMAC_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
#: The curves EdDSA signs with (RFC 8037 §3.1); joserfc's ``check_key`` looks only at the key type,
#: so an X25519 (key-agreement) OKP key would pass it.
_EDDSA_CURVES: Final = frozenset({"Ed25519", "Ed448"})
_KEK_REGISTRY: Final = jwe.JWERegistry(algorithms=["dir", "A256GCM"])
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_PUBLICATION_ORDER: Final[dict[str, int]] = {"current": 0, "next": 1, "retired": 2}


@functools.cache
def _jws_algorithm(alg: str) -> JWSAlgModel:
    """joserfc's algorithm object for one of keyturn's algorithms; ``ValueError`` for any other."""
    algorithm = jws.JWSRegistry.algorithms.get(alg) if alg in ALGORITHMS else None
    if algorithm is None:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    return algorithm


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key, its pinned algorithm, its ``kid`` and its place in the rotation.

    The key always fits its algorithm: type, curve, ``use`` and the key's own ``alg``, as
    joserfc's algorithm object checks them (``check_key``), and for EdDSA a signing curve, which
    joserfc does not check. The key and the algorithm never change, so this is checked once, when
    the pair is made -- a ``ValueError`` then -- and not again for every token signed or verified
    with it. It is the one place that decides which keys fit which algorithm: a guard's JWK Set
    reader makes a ``SigningKey`` and skips the key when this refuses it.
    """

    kid: str
    alg: str
    key: Key
    state: KeyState = "current"
    #: When the key entered its present role: generated (``next``), promoted (``current``).
    #: Automatic rotation measures a key's age from here, not from its generation.
    created_at: float = 0.0
    #: When a retired key may leave the JWKS: no token it signed can be valid after this.
    drop_after: float | None = None
    #: joserfc's algorithm object for ``alg``: what signs and verifies with this key. Set when the
    #: key is made (an attribute, not a lookup: it is read for every token signed or verified).
    jws_algorithm: JWSAlgModel = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        algorithm = _jws_algorithm(self.alg)
        object.__setattr__(self, "jws_algorithm", algorithm)
        try:
            algorithm.check_key(self.key)
        except JoseError as exc:
            raise ValueError(f"the key does not fit {self.alg}") from exc
        if self.alg == "EdDSA" and getattr(self.key, "curve_name", None) not in _EDDSA_CURVES:
            raise ValueError("the key does not fit EdDSA: not a signing curve")

    @property
    def is_hmac(self) -> bool:
        return self.alg in HMAC_ALGORITHMS

    def public_jwk(self) -> dict[str, Any]:
        """The RFC 7517 public JWK with ``kid``, ``alg`` and ``use: sig``.

        Raises ``ValueError`` for an HMAC key: a shared secret is never published.
        """
        if self.is_hmac:
            raise ValueError("an HMAC key has no public form")
        data: dict[str, Any] = dict(self.key.as_dict(private=False))
        data.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return data

    def private_jwk_json(self) -> str:
        """The private key as JWK JSON, for storage only (see :func:`seal_private_jwk`)."""
        return json.dumps(self.key.as_dict(private=True), sort_keys=True)

    def with_state(self, state: KeyState, *, drop_after: float | None = None, since: float | None = None) -> SigningKey:
        """A copy in ``state``; ``since`` moves ``created_at`` (a promotion starts the key's service)."""
        created_at = self.created_at if since is None else since
        return replace(self, state=state, drop_after=drop_after, created_at=created_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyChange:
    """One change of the stored ring (a rotation), applied all-or-nothing by a key store.

    It applies only while ``expect_current`` is still a ``current`` key (``None``:
    while no key is current), so two instances rotating at once cannot both win.
    """

    expect_current: str | None
    #: New rows.
    add: tuple[SigningKey, ...] = ()
    #: Existing rows whose ``state``, ``drop_after`` and ``created_at`` become these keys'.
    update: tuple[SigningKey, ...] = ()
    #: Rows removed at once (never-used ``next`` keys; every key after a compromise).
    delete: tuple[str, ...] = ()
    #: Also remove retired rows whose ``drop_after`` is at or before this time.
    purge_before: float | None = None


def _new_key(alg: str) -> Key:
    if alg in HMAC_ALGORITHMS:
        return jwk.generate_key("oct", _HMAC_BYTES[alg] * 8)
    if alg.startswith(("RS", "PS")):
        return jwk.generate_key("RSA", RSA_KEY_BITS)
    if alg in _EC_CURVES:
        return jwk.generate_key("EC", _EC_CURVES[alg])
    return jwk.generate_key("OKP", "Ed25519")


def generate_signing_key(alg: str, *, now: float, state: KeyState = "current") -> SigningKey:
    """A fresh key for ``alg``; its ``kid`` is the RFC 7638 thumbprint of the public key.

    Raises :class:`ConfigurationError` for an algorithm keyturn does not offer.
    """
    if alg not in ALGORITHMS:
        raise ConfigurationError(f"unsupported signing algorithm {alg!r}; choose one of {sorted(ALGORITHMS)}")
    key = _new_key(alg)
    kid = _hmac_kid(key) if alg in HMAC_ALGORITHMS else key.thumbprint()
    return SigningKey(kid=kid, alg=alg, key=key, state=state, created_at=now)


def _hmac_kid(key: Key) -> str:
    # A plain hash of the secret would be an offline oracle for it; a keyed label is not.
    secret = key.get_op_key("sign")
    if not isinstance(secret, bytes):
        raise TypeError("an HMAC key must hold bytes")
    digest = hmac.new(secret, b"keyturn kid", hashlib.sha256).digest()[:12]
    return "hs-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hmac_signing_key(secret: bytes, alg: str = "HS256", *, now: float = 0.0) -> SigningKey:
    """The key of the shared-secret mode; refuses a secret shorter than 32 bytes."""
    if alg not in HMAC_ALGORITHMS:
        raise ConfigurationError(f"{alg} is not an HMAC algorithm")
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise ConfigurationError(f"the HMAC secret must be at least {MIN_HMAC_SECRET_BYTES} bytes long")
    key = OctKey.import_key(secret)
    return SigningKey(kid=_hmac_kid(key), alg=alg, key=key, created_at=now)


def symmetric_key_from_b64(value: str, *, purpose: str) -> OctKey:
    """A 32-byte key given as base64url (with or without padding), for ``purpose`` messages.

    Raises :class:`ConfigurationError` for another alphabet or another length: a
    lenient decoder would silently skip stray characters and take a different key.
    """
    unpadded = value.strip().rstrip("=")
    if not _BASE64URL.fullmatch(unpadded):
        raise ConfigurationError(f"{purpose} must be base64url (A-Z, a-z, 0-9, '-', '_')")
    try:
        raw = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except ValueError as exc:
        raise ConfigurationError(f"{purpose} must be base64url (A-Z, a-z, 0-9, '-', '_')") from exc
    if len(raw) != 32:
        raise ConfigurationError(f"{purpose} must decode to exactly 32 bytes")
    return OctKey.import_key(raw)


def seal_private_jwk(private_json: str, kek: OctKey | None) -> str:
    """Encrypt a private JWK for storage (JWE dir/A256GCM), or return it as is without a KEK."""
    if kek is None:
        return private_json
    return jwe.encrypt_compact(
        {"alg": "dir", "enc": "A256GCM", "cty": "jwk+json"}, private_json, kek, registry=_KEK_REGISTRY
    )


def is_sealed(stored: str) -> bool:
    """Whether a stored private key is sealed (a JWE), rather than plain JWK JSON."""
    return not stored.lstrip().startswith("{")


def _unseal(stored: str, kek: OctKey | None, previous: OctKey | None) -> tuple[bytes, bool]:
    """The stored private key's JSON, and whether ``kek`` sealed it.

    False for a key stored in clear, or sealed with ``previous`` (the KEK being replaced).
    Raises :class:`ConfigurationError` if it is sealed and no KEK given opens it.
    """
    if not is_sealed(stored):
        return stored.encode(), False
    if kek is None:
        raise ConfigurationError("signing keys are encrypted at rest: KEYTURN_KEY_ENCRYPTION_KEY is required")
    for candidate in (kek, previous):
        if candidate is None:
            continue
        try:
            return jwe.decrypt_compact(stored, candidate, registry=_KEK_REGISTRY).plaintext or b"", candidate is kek
        except (JoseError, ValueError):
            continue
    tried = "KEYTURN_KEY_ENCRYPTION_KEY" + (" (nor KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS)" if previous else "")
    raise ConfigurationError(f"{tried} does not decrypt the stored signing keys")


def load_private_jwk(stored: str, kek: OctKey | None, previous: OctKey | None = None) -> Key:
    """Import a stored private key, decrypting it with ``kek`` -- or ``previous`` -- when it is sealed.

    ``previous`` is the key-encryption key being replaced (``KEYTURN_KEY_ENCRYPTION_KEY_PREVIOUS``):
    rows it sealed still open until :func:`resealed_private_jwk` has moved them to ``kek``.
    Raises :class:`ConfigurationError` if the key is sealed and neither KEK opens it, or if the
    stored value is not a key at all: keyturn refuses to start then.
    """
    plain, _ = _unseal(stored, kek, previous)
    try:
        return jwk.import_key(json.loads(plain))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ConfigurationError("a stored signing key is corrupt; restore the signing_keys table") from exc


def resealed_private_jwk(stored: str, kek: OctKey | None, previous: OctKey | None = None) -> str | None:
    """``stored`` sealed with ``kek``, or ``None`` when it already is (or when there is no KEK).

    Moves a key stored in clear, or sealed with ``previous``, under the current KEK: how a KEK is
    set on an existing installation, and how one is replaced in place. Raises
    :class:`ConfigurationError` as :func:`load_private_jwk` does.
    """
    if kek is None:
        return None
    plain, sealed_with_kek = _unseal(stored, kek, previous)
    return None if sealed_with_kek else seal_private_jwk(plain.decode(), kek)


class KeyRing:
    """The ordered set of signing keys: the newest current key signs, all verify.

    ``next`` keys are published (and verify) before they sign, so resource servers'
    JWKS caches already hold them when a rotation promotes them; ``retired`` keys
    verify and stay published until their ``drop_after``. Immutable: rotation builds
    a new ring, so a reader never sees a half-rotated one.
    """

    __slots__ = ("_by_kid", "_keys")

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        # Ties broken by kid, so every instance picks the same signing key from the same rows.
        self._keys: tuple[SigningKey, ...] = tuple(sorted(keys, key=lambda k: (k.created_at, k.kid)))
        self._by_kid: dict[str, SigningKey] = {k.kid: k for k in self._keys}

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(self._keys)

    def in_state(self, state: KeyState) -> list[SigningKey]:
        """The keys in ``state``, oldest first."""
        return [k for k in self._keys if k.state == state]

    @property
    def signing_key(self) -> SigningKey:
        """The newest ``current`` key. Raises ``LookupError`` on a ring with none."""
        current = self.in_state("current")
        if not current:
            raise LookupError("the key ring holds no current key")
        return current[-1]

    @property
    def next_key(self) -> SigningKey | None:
        """The newest pre-published key, which the next rotation promotes; ``None`` if there is none."""
        upcoming = self.in_state("next")
        return upcoming[-1] if upcoming else None

    def verification_key(self, kid: str) -> SigningKey | None:
        """The key named ``kid``, or ``None``: unknown kids are never guessed at."""
        return self._by_kid.get(kid)

    def published(self, now: float) -> list[SigningKey]:
        """The keys a verifier may need at ``now``: all but retired keys past their drop time.

        The signing key comes first, then the next key, then the retired ones, newest first.
        """
        live = [k for k in reversed(self._keys) if k.drop_after is None or k.drop_after > now]
        return sorted(live, key=lambda k: _PUBLICATION_ORDER[k.state])

    def jwks(self, now: float) -> dict[str, Any]:
        """The RFC 7517 JWK Set of public keys; empty in HMAC mode, whose secret is never published."""
        return {"keys": [k.public_jwk() for k in self.published(now) if not k.is_hmac]}
