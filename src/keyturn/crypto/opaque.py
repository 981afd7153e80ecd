"""Opaque secrets: refresh tokens, CSRF values and API keys — mint, hash, compare.

Each is 256 bits from :mod:`secrets`, shown to its holder once and stored only as
a SHA-256 digest. A fast hash is right here (unlike passwords): the input has full
entropy, so there is nothing to brute-force, and the lookup stays cheap.

A spent refresh token's successor must be returned again on a retry inside the
grace window, although only hashes are stored. :func:`seal_successor` encrypts the
successor under a key derived from the *spent* token itself (HKDF → AES-256-GCM),
so only whoever presents that token can recover it; the database alone cannot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "API_KEY_PREFIX",
    "REFRESH_TOKEN_PREFIX",
    "api_key_prefix",
    "constant_time_equal",
    "hash_secret",
    "mint_api_key",
    "mint_csrf_token",
    "mint_refresh_token",
    "open_successor",
    "seal_successor",
]

#: Bytes of randomness in every opaque secret (256 bits).
SECRET_BYTES: Final = 32
#: Recognisable prefixes, so secret scanners and humans can tell what leaked.
REFRESH_TOKEN_PREFIX: Final = "ktr_"
API_KEY_PREFIX: Final = "ktk_"
#: Characters of an API key kept in clear to help its owner recognise it.
API_KEY_VISIBLE: Final = 12
_NONCE_BYTES: Final = 12
_SEAL_INFO: Final = b"keyturn refresh successor v1"


def _random() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def mint_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + _random()


def mint_csrf_token() -> str:
    return _random()


def mint_api_key() -> str:
    return API_KEY_PREFIX + _random()


def api_key_prefix(key: str) -> str:
    """The non-secret start of an API key that listings show."""
    return key[:API_KEY_VISIBLE]


def hash_secret(value: str) -> str:
    """The storage form of a high-entropy secret: hex SHA-256."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    """Compare two secrets without leaking where they differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _seal_key(spent_token: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO)
    return hkdf.derive(spent_token.encode("utf-8"))


def seal_successor(spent_token: str, successor: str) -> str:
    """Encrypt ``successor`` so that only the holder of ``spent_token`` can read it back."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    sealed = AESGCM(_seal_key(spent_token)).encrypt(nonce, successor.encode("utf-8"), None)
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_successor(spent_token: str, sealed: str) -> str | None:
    """The successor sealed under ``spent_token``, or ``None`` if it does not open."""
    try:
        raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
        plain = AESGCM(_seal_key(spent_token)).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
    except (InvalidTag, ValueError):
        return None
    return plain.decode("utf-8")
