"""keyturn's tokens verify in other ecosystems' standard JWT libraries, from the published JWKS alone.

PyJWT (Python, PyJWKClient) and jose (Node) are given nothing but the issuer's JWKS —
fetched from a real `keyturn serve`, or built as the server publishes it for each
asymmetric algorithm — and must accept keyturn's tokens and refuse tampered ones.
Node is optional locally (the test skips, saying why) and mandatory with CI=true.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from keyturn.crypto.access_tokens import issue_access_token
from keyturn.crypto.keys import ASYMMETRIC_ALGORITHMS, KeyRing, generate_signing_key
from tests.conftest import PASSWORD, unavailable
from tests.process import free_port, keyturn_server

HERE = Path(__file__).resolve().parent
ISSUER = "https://auth.interop.test"
AUDIENCE = "interop-api"


def tampered(token: str) -> str:
    """The same token with its ``sub`` changed and the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def node_verify(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run tests/interop/verify.mjs (jose) over ``cases``; installs jose with `npm ci` when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Node.js", "node/npm not on PATH; the jose interop check needs them")
    if not (HERE / "node_modules" / "jose").is_dir():
        installed = subprocess.run(
            [str(npm), "ci", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if installed.returncode != 0:
            unavailable("npm registry", installed.stderr.strip()[-500:])
    result = subprocess.run(
        [str(node), "verify.mjs"],
        cwd=HERE,
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


def pyjwt_verify(token: str, jwks: dict[str, Any], *, issuer: str, audience: str) -> dict[str, Any]:
    """PyJWT's standard flow: pick the JWK by the token's kid, verify with the JWK's own alg."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[key.algorithm_name],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims


# --- against a real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(issuer URL, access token)`` from a real `keyturn serve` (default algorithm) after register + login."""
    tmp = tmp_path_factory.mktemp("interop")
    port = free_port()
    env = {"KEYTURN_ISSUER": f"http://127.0.0.1:{port}", "KEYTURN_DATA_DIR": str(tmp / "data")}
    with keyturn_server(env, tmp / "server.log", port=port) as url, httpx.Client(base_url=url, timeout=10) as client:
        credentials = {"email": "interop@example.com", "password": PASSWORD}
        assert client.post("/auth/register", json=credentials).status_code == 201
        login = client.post("/auth/login", json=credentials)
        assert login.status_code == 200, login.text
        yield url, login.json()["data"]["access_token"]


@pytest.mark.slow
def test_pyjwt_verifies_a_live_token_through_discovery(live_token: tuple[str, str]) -> None:
    """PyJWT, finding the keys through discovery and PyJWKClient, accepts the token and refuses a forgery."""
    issuer, token = live_token
    jwks_uri = httpx.get(f"{issuer}/.well-known/openid-configuration").json()["jwks_uri"]
    signing_key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key, algorithms=[signing_key.algorithm_name], audience="keyturn", issuer=issuer)
    assert claims["email"] == "interop@example.com"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            tampered(token), signing_key, algorithms=[signing_key.algorithm_name], audience="keyturn", issuer=issuer
        )


@pytest.mark.slow
def test_node_jose_verifies_a_live_token_from_the_jwks_url(live_token: tuple[str, str]) -> None:
    """jose's createRemoteJWKSet, given the server's JWKS URL, accepts the token and refuses a forgery."""
    issuer, token = live_token
    jwks_uri = httpx.get(f"{issuer}/.well-known/openid-configuration").json()["jwks_uri"]
    case = {"issuer": issuer, "audience": "keyturn", "jwks_uri": jwks_uri}
    good, bad = node_verify([{**case, "token": token}, {**case, "token": tampered(token)}])
    assert good["ok"] is True, good
    assert good["alg"] == "ES256"
    assert bad == {"ok": False, "error": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}


# --- every asymmetric algorithm, as the server publishes it --------------------------------------------


@pytest.fixture(scope="module")
def signed_by_every_algorithm() -> dict[str, tuple[str, dict[str, Any]]]:
    """``alg -> (token, JWKS)``: one fresh key per asymmetric algorithm, its JWKS as the server serves it."""
    now = time.time()  # the other libraries check exp and iat against their own clocks
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for alg in sorted(ASYMMETRIC_ALGORITHMS):
        key = generate_signing_key(alg, now=now)
        token = issue_access_token(
            key,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject=f"user-{alg}",
            ttl=3600,
            now=now,
            roles=["user"],
            scope="orders:read",
        ).token
        out[alg] = (token, KeyRing([key]).jwks(now))
    return out


@pytest.mark.parametrize("alg", sorted(ASYMMETRIC_ALGORITHMS))
def test_pyjwt_verifies_every_algorithm(
    signed_by_every_algorithm: dict[str, tuple[str, dict[str, Any]]], alg: str
) -> None:
    """PyJWT accepts a token of each algorithm from the JWKS alone, and refuses it tampered."""
    token, jwks = signed_by_every_algorithm[alg]
    assert pyjwt_verify(token, jwks, issuer=ISSUER, audience=AUDIENCE)["sub"] == f"user-{alg}"
    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_verify(tampered(token), jwks, issuer=ISSUER, audience=AUDIENCE)


def test_node_jose_verifies_every_algorithm(signed_by_every_algorithm: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """jose accepts a token of each algorithm from the JWKS alone (typ at+jwt enforced), and refuses it tampered."""
    cases = []
    for token, jwks in signed_by_every_algorithm.values():
        case = {"issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks}
        cases += [{**case, "token": token}, {**case, "token": tampered(token)}]
    answers = node_verify(cases)
    for alg, good, bad in zip(signed_by_every_algorithm, answers[::2], answers[1::2], strict=True):
        assert good == {"ok": True, "sub": f"user-{alg}", "alg": alg}, (alg, good)
        assert bad == {"ok": False, "error": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}, (alg, bad)
