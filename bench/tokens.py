"""Keys and access tokens shared by the HTTP peers.

The harness owns the key material and hands the same key to every server of a comparison, so one
token (or one list of unique tokens) is valid for all of them: both sides of an A/B run then
receive byte-identical requests. Tokens are minted with joserfc, a third-party encoder, so that the
test input does not depend on the code under test.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

HttpAlgorithm = Literal["ES256", "HS256"]

#: The claims the tutorials put in an access token (``{id, email, role}`` plus iat/exp).
TUTORIAL_CLAIMS: Mapping[str, str] = {"id": "507f1f77bcf86cd799439011", "email": "alice@example.com", "role": "admin"}

ClaimsFactory = Callable[[int], dict[str, object]]
"""Claims of the i-th token; a guarded app with stricter rules (iss, aud, ...) supplies its own."""


@dataclass(frozen=True)
class HttpKey:
    """One signing key in the forms the peers want: a PEM file (ES256) or a secret (HS256)."""

    algorithm: HttpAlgorithm
    pem_file: Path | None
    secret: str | None
    jwk: ECKey | OctKey


def make_key(algorithm: HttpAlgorithm, work_dir: Path) -> HttpKey:
    """Generate a fresh key for one benchmark run; the ES256 private key goes to a 0600 PEM file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if algorithm == "HS256":
        secret = secrets.token_hex(32)
        return HttpKey(algorithm, None, secret, OctKey.import_key(secret))
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem_file = work_dir / "es256-private.pem"
    pem_file.touch(mode=0o600)
    pem_file.write_bytes(pem)
    return HttpKey(algorithm, pem_file, None, ECKey.import_key(pem))


def tutorial_claims(index: int, lifetime_s: int = 3600) -> dict[str, object]:
    """Tutorial-shaped claims; ``jti`` makes every token distinct (its value is otherwise unused)."""
    now = int(time.time())
    return {**TUTORIAL_CLAIMS, "iat": now, "exp": now + lifetime_s, "jti": f"{index}-{uuid.uuid4().hex[:8]}"}


def mint(key: HttpKey, claims: dict[str, object], header: Mapping[str, str] | None = None) -> str:
    """Sign one compact JWT: ``typ: JWT`` as jsonwebtoken writes it, unless ``header`` says otherwise.

    ``header`` adds or overrides JOSE header members (a peer may demand ``kid`` and its own ``typ``).
    """
    protected = {"alg": key.algorithm, "typ": "JWT", **(header or {})}
    return jwt.encode(protected, claims, key.jwk, algorithms=[key.algorithm])


def write_tokens(
    key: HttpKey,
    count: int,
    path: Path,
    claims: ClaimsFactory = tutorial_claims,
    header: Mapping[str, str] | None = None,
) -> Path:
    """Write ``count`` distinct tokens, one per line, for ``load.lua``'s rotation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(mint(key, claims(i), header) + "\n" for i in range(count)))
    return path


def write_login_body(path: Path, email: str, password: str) -> Path:
    """The JSON body of ``POST /auth/login`` for login storms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"email": email, "password": password}))
    return path
