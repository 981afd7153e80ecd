"""What the guarded app and the harness must agree on: issuer, audience, and the key the guard trusts.

Kept apart from ``bench/apps/guarded.py``, which builds its app (and reads its key from the
environment) on import: the harness needs these without starting a guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from keyturn.crypto.keys import SigningKey, hmac_signing_key

ISSUER: Final = "https://auth.bench.keyturn.test"
AUDIENCE: Final = "bench-api"
JWKS_PATH: Final = "/.well-known/jwks.json"


def trusted_key(algorithm: str, pem_file: Path | None, secret: str | None) -> SigningKey:
    """The verification key the guard trusts, with the ``kid`` tokens must name.

    ES256: the public half of the PEM file, ``kid`` = its RFC 7638 thumbprint (as keyturn's server
    names its keys). HS256: keyturn's HMAC key for ``secret``, ``kid`` derived the way the guard does.
    Raises ``ValueError`` when the key material for ``algorithm`` is missing.
    """
    if algorithm == "HS256":
        if not secret:
            raise ValueError("HS256 needs a secret")
        return hmac_signing_key(secret.encode("utf-8"), algorithm)
    if pem_file is None:
        raise ValueError(f"{algorithm} needs a PEM key file")
    private = serialization.load_pem_private_key(pem_file.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{algorithm} needs an EC private key")
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = ECKey.import_key(public_pem)
    return SigningKey(kid=public.thumbprint(), alg=algorithm, key=public)
