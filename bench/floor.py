"""Sign/verify ops/s per JWS algorithm: the cryptographic floor vs JOSE libraries.

The *floor* is the bare ``cryptography`` primitive on a ready-made signing input (and, for
verification, a ready-made signature in the primitive's own encoding): no base64, no JSON, no
header checks, no DER <-> raw conversion for ECDSA. Nothing that produces or checks a JWS can beat
it, so "library ops/s ÷ floor ops/s" says how much of a token operation is overhead around the
maths. joserfc's compact JWS serialize/deserialize is the second contender; keyturn's own
issue/verify functions plug in as a third (see :data:`TokenContender`).

Timing: each sample is a loop calibrated to last about ``sample_s`` of CPU time, timed with
``time.thread_time`` (the measuring thread's own CPU clock): on a shared machine, time spent
descheduled while other processes run would otherwise land on whichever contender was running, and
dominate the spread. Contenders take turns within every round (order rotated round by round) and
the ratio to the floor is taken round by round, then summarised as median and min-max.
"""

from __future__ import annotations

import json
import time
import warnings
from base64 import urlsafe_b64encode
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key

from bench.stats import Spread, ratios

ALGORITHMS: Sequence[str] = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)

Operation = Literal["sign", "verify"]
OPERATIONS: Sequence[Operation] = ("sign", "verify")

_HASHES: Mapping[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
#: JWK key class by algorithm family: a PEM is imported as the type it must be (joserfc warns when left to guess).
_KEY_CLASSES: Mapping[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
    "RS": RSAKey,
    "PS": RSAKey,
    "ES": ECKey,
    "Ed": OKPKey,
}
_CURVES: Mapping[str, ec.EllipticCurve] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}

#: Claims of the benchmark token: the tutorials' access-token shape, with a fixed time.
SAMPLE_CLAIMS: Mapping[str, object] = {
    "sub": "507f1f77bcf86cd799439011",
    "email": "alice@example.com",
    "role": "admin",
    "iat": 1_700_000_000,
    "exp": 1_700_000_900,
    "jti": "b7f3c1d2e4a5968778695a4b3c2d1e0f",
}


@dataclass(frozen=True)
class KeyMaterial:
    """One algorithm's key in every form a contender may want, plus the token content to sign.

    ``private_key``/``public_key`` are ``cryptography`` objects (``bytes`` for HMAC);
    ``private_pem``/``public_pem`` are PKCS#8/SPKI PEM (``None`` for HMAC); ``secret`` is the HMAC
    key (``None`` otherwise); ``private_jwk``/``public_jwk`` are JWK dicts.
    """

    algorithm: str
    private_key: object
    public_key: object
    private_pem: bytes | None
    public_pem: bytes | None
    secret: bytes | None
    private_jwk: Mapping[str, object]
    public_jwk: Mapping[str, object]
    claims: Mapping[str, object] = field(default_factory=lambda: dict(SAMPLE_CLAIMS))

    @property
    def payload(self) -> bytes:
        """The claims as compact JSON, as a JWS payload."""
        return json.dumps(self.claims, separators=(",", ":")).encode()

    @property
    def signing_input(self) -> bytes:
        """``b64url(header) . b64url(payload)``: what a JWS signature actually covers."""
        header = json.dumps({"alg": self.algorithm, "typ": "JWT"}, separators=(",", ":")).encode()
        return _b64(header) + b"." + _b64(self.payload)


@dataclass(frozen=True)
class Ops:
    """Zero-argument callables doing one sign and one verify; both must raise on failure."""

    sign: Callable[[], object]
    verify: Callable[[], object]


TokenContender = Callable[[KeyMaterial], Ops | None]
"""Builds a contender's sign/verify closures for one algorithm, or ``None`` if it lacks it.

Key parsing and other set-up belong in the factory, outside the timed closures.
"""


def _b64(data: bytes) -> bytes:
    return urlsafe_b64encode(data).rstrip(b"=")


# --- key material ----------------------------------------------------------------------------


def make_material(algorithm: str) -> KeyMaterial:
    """Generate a fresh key suitable for ``algorithm`` (RSA 2048, the NIST curve, Ed25519, 64-byte secret)."""
    if algorithm.startswith("HS"):
        secret = bytes(range(64))
        jwk = import_key(secret, "oct").as_dict(private=True)
        return KeyMaterial(algorithm, secret, secret, None, None, secret, jwk, jwk)
    private = _generate_private(algorithm)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_key = _KEY_CLASSES[algorithm[:2]].import_key(private_pem)
    return KeyMaterial(
        algorithm,
        private,
        private.public_key(),
        private_pem,
        public_pem,
        None,
        jwk_key.as_dict(private=True),
        jwk_key.as_dict(private=False),
    )


def _generate_private(
    algorithm: str,
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    if algorithm[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm])
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown algorithm {algorithm}")


# --- contenders ------------------------------------------------------------------------------


def floor_ops(material: KeyMaterial) -> Ops:
    """The bare ``cryptography`` primitive for ``material.algorithm``."""
    message = material.signing_input
    family, bits = material.algorithm[:2], material.algorithm[2:]
    if family == "HS":
        return _hmac_ops(material, message, _HASHES[bits])
    if family in ("RS", "PS"):
        return _rsa_ops(material, message, _HASHES[bits], pss=family == "PS")
    if family == "ES":
        return _ecdsa_ops(material, message, _HASHES[bits])
    return _eddsa_ops(material, message)


def _hmac_ops(material: KeyMaterial, message: bytes, hash_type: type[hashes.HashAlgorithm]) -> Ops:
    secret = material.secret
    if secret is None:
        raise TypeError(f"{material.algorithm} needs a secret")

    def sign() -> bytes:
        mac = hmac.HMAC(secret, hash_type())
        mac.update(message)
        return mac.finalize()

    signature = sign()

    def verify() -> None:
        mac = hmac.HMAC(secret, hash_type())
        mac.update(message)
        mac.verify(signature)

    return Ops(sign, verify)


def _rsa_ops(material: KeyMaterial, message: bytes, hash_type: type[hashes.HashAlgorithm], *, pss: bool) -> Ops:
    private, public = material.private_key, material.public_key
    if not (isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)):
        raise TypeError(f"{material.algorithm} needs an RSA key pair")
    # JWA (RFC 7518 §3.5): PSS with MGF1 over the same hash and a salt as long as the digest.
    pad = (
        padding.PSS(mgf=padding.MGF1(hash_type()), salt_length=padding.PSS.DIGEST_LENGTH) if pss else padding.PKCS1v15()
    )
    signature = private.sign(message, pad, hash_type())
    return Ops(
        sign=lambda: private.sign(message, pad, hash_type()),
        verify=lambda: public.verify(signature, message, pad, hash_type()),
    )


def _ecdsa_ops(material: KeyMaterial, message: bytes, hash_type: type[hashes.HashAlgorithm]) -> Ops:
    private, public = material.private_key, material.public_key
    if not (isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey)):
        raise TypeError(f"{material.algorithm} needs an EC key pair")
    signature = private.sign(message, ec.ECDSA(hash_type()))  # DER: the primitive's own encoding
    return Ops(
        sign=lambda: private.sign(message, ec.ECDSA(hash_type())),
        verify=lambda: public.verify(signature, message, ec.ECDSA(hash_type())),
    )


def _eddsa_ops(material: KeyMaterial, message: bytes) -> Ops:
    private, public = material.private_key, material.public_key
    if not (isinstance(private, ed25519.Ed25519PrivateKey) and isinstance(public, ed25519.Ed25519PublicKey)):
        raise TypeError(f"{material.algorithm} needs an Ed25519 key pair")
    signature = private.sign(message)
    return Ops(sign=lambda: private.sign(message), verify=lambda: public.verify(signature, message))


def joserfc_ops(material: KeyMaterial) -> Ops:
    """joserfc's compact JWS: ``serialize_compact`` / ``deserialize_compact`` with parsed keys."""
    # joserfc warns on every "EdDSA" use (RFC 9864 deprecates the name); warnings are not the
    # subject of this measurement.
    warnings.simplefilter("ignore", SecurityWarning)
    algorithm = material.algorithm
    private: Key = import_key(dict(material.private_jwk))  # type: ignore[arg-type]
    public: Key = import_key(dict(material.public_jwk))  # type: ignore[arg-type]
    header = {"alg": algorithm, "typ": "JWT"}
    payload = material.payload
    allowed = [algorithm]
    token = jws.serialize_compact(header, payload, private, algorithms=allowed)
    return Ops(
        sign=lambda: jws.serialize_compact(header, payload, private, algorithms=allowed),
        verify=lambda: jws.deserialize_compact(token, public, algorithms=allowed),
    )


def pyjwt_ops(material: KeyMaterial) -> Ops | None:
    """PyJWT's JWS layer (``jwt.api_jws``: signature only, like joserfc's compact JWS above).

    The other JOSE library keyturn could have been built on; ``None`` when PyJWT (with its
    ``crypto`` extra) is not installed. Keys are ``cryptography`` objects, PyJWT's fastest form.
    """
    try:
        from jwt import api_jws  # noqa: PLC0415 - optional: only for this comparison
    except ImportError:
        return None
    algorithm = material.algorithm
    private = material.secret if material.secret is not None else material.private_key
    public = material.secret if material.secret is not None else material.public_key
    payload = material.payload
    headers = {"typ": "JWT"}
    allowed = [algorithm]
    token = api_jws.encode(payload, private, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]
    return Ops(
        sign=lambda: api_jws.encode(payload, private, algorithm=algorithm, headers=headers),  # type: ignore[arg-type]
        verify=lambda: api_jws.decode(token, public, algorithms=allowed),  # type: ignore[arg-type]
    )


#: Built-in contenders, floor first (the denominator of every ratio).
DEFAULT_CONTENDERS: Mapping[str, TokenContender] = {"floor": floor_ops, "joserfc": joserfc_ops, "pyjwt": pyjwt_ops}


# --- measurement -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FloorSettings:
    """Duration of one timed sample and the number of interleaved rounds."""

    sample_s: float = 0.1
    rounds: int = 5


@dataclass(frozen=True)
class OpOutcome:
    """One (algorithm, operation, contender): ops/s per round and the ratio to the floor."""

    algorithm: str
    operation: Operation
    contender: str
    ops_per_s: Sequence[float]
    floor_ops_per_s: Sequence[float]

    @property
    def throughput(self) -> Spread:
        """ops/s over the rounds."""
        return Spread.of(self.ops_per_s)

    @property
    def ratio(self) -> Spread:
        """contender ops/s ÷ floor ops/s, round by round (1.0 for the floor itself)."""
        return ratios(self.ops_per_s, self.floor_ops_per_s)


def time_loop(operation: Callable[[], object], iterations: int) -> float:
    """ops per CPU-second of ``iterations`` back-to-back calls (the loop's own cost is included, and tiny)."""
    start = time.thread_time()
    for _ in range(iterations):
        operation()
    return iterations / max(time.thread_time() - start, 1e-9)


def calibrate(operation: Callable[[], object], sample_s: float) -> int:
    """Iterations that take about ``sample_s``, found by doubling from one (also warms caches up)."""
    iterations = 1
    while True:
        start = time.thread_time()
        for _ in range(iterations):
            operation()
        elapsed = time.thread_time() - start
        if elapsed >= sample_s / 4:
            return max(1, round(iterations * sample_s / elapsed))
        iterations *= 2


def measure_algorithm(
    algorithm: str, contenders: Mapping[str, TokenContender], settings: FloorSettings
) -> list[OpOutcome]:
    """All contenders' sign and verify for one algorithm; the first contender is the floor."""
    material = make_material(algorithm)
    prepared = {name: ops for name, factory in contenders.items() if (ops := factory(material)) is not None}
    outcomes: list[OpOutcome] = []
    for operation in OPERATIONS:
        calls = {name: getattr(ops, operation) for name, ops in prepared.items()}
        samples = _interleaved(calls, settings)
        floor = samples[next(iter(calls))]
        outcomes += [OpOutcome(algorithm, operation, name, runs, floor) for name, runs in samples.items()]
    return outcomes


def _interleaved(calls: Mapping[str, Callable[[], object]], settings: FloorSettings) -> dict[str, list[float]]:
    iterations = {name: calibrate(call, settings.sample_s) for name, call in calls.items()}
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(settings.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            samples[name].append(time_loop(calls[name], iterations[name]))
    return samples


def run_floor(
    contenders: Mapping[str, TokenContender] = DEFAULT_CONTENDERS,
    settings: FloorSettings | None = None,
    algorithms: Sequence[str] = ALGORITHMS,
    progress: Callable[[str], None] = print,
) -> list[OpOutcome]:
    """Measure every algorithm; the first entry of ``contenders`` must be the floor."""
    settings = settings or FloorSettings()
    outcomes: list[OpOutcome] = []
    for algorithm in algorithms:
        found = measure_algorithm(algorithm, contenders, settings)
        outcomes += found
        progress(
            "  "
            + algorithm
            + ": "
            + ", ".join(f"{o.operation} {o.contender} x{o.ratio.median:.2f}" for o in found if o.contender != "floor")
        )
    return outcomes
