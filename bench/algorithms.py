"""``python -m bench.algorithms``: what each signing algorithm costs keyturn, to choose the default from figures.

For each of the 13 algorithms it measures, with keyturn's own issuer and verifier
(:func:`~keyturn.crypto.access_tokens.issue_access_token`,
:func:`~keyturn.crypto.access_tokens.verify_access_token`) on a realistic token:

* sign and verify operations per second, in timed loops of ``--sample`` seconds;
* the token's size in bytes, and the size of its published JWK;
* the key generation time (paid once per rotation).

Rounds are interleaved — every round times every algorithm, in an order rotated by
one each round — so a slow spell of the machine hits all of them alike; figures are
the median over rounds with the min-max spread, and the ratios to ES256 are taken
round by round (see :mod:`bench.stats`). The output is the Markdown table that
docs/keys.md quotes.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.stats import Spread, ratios
from keyturn.crypto.access_tokens import VerifyOptions, issue_access_token, verify_access_token
from keyturn.crypto.keys import ALGORITHMS, KeyRing, SigningKey, generate_signing_key

#: The order of the table: the default first, then by family.
ORDER = (
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "HS256",
    "HS384",
    "HS512",
)
BASELINE = "ES256"
NOW = 1_800_000_000.0
OPTIONS = VerifyOptions(issuer="https://auth.example.com", audience="orders-api")


@dataclass
class Series:
    """The per-round measurements of one algorithm."""

    sign: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)


def sample_token(key: SigningKey) -> str:
    """A token with the claims keyturn puts in a login's access token."""
    return issue_access_token(
        key,
        issuer=OPTIONS.issuer,
        audience=OPTIONS.audience,
        subject="0b4a6e1c-59b4-4c0e-9a55-6f1f7f2d8f3e",
        ttl=900,
        now=NOW,
        session_id="5f0d1c2e-8e7b-4d8f-9a51-0c2b7a9e3d41",
        email="alice@example.com",
        roles=["user", "editor"],
        scope="orders:read orders:write",
    ).token


def ops_per_second(operation: Callable[[], object], seconds: float) -> float:
    """Run ``operation`` in a loop for about ``seconds``; return completed operations per second."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(8):
            operation()
        count += 8
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def measure(algorithms: Sequence[str], rounds: int, seconds: float) -> dict[str, Series]:
    """Interleaved rounds of sign and verify loops for every algorithm."""
    keys = {alg: generate_signing_key(alg, now=NOW) for alg in algorithms}
    tokens = {alg: sample_token(key) for alg, key in keys.items()}
    rings = {alg: KeyRing([key]) for alg, key in keys.items()}
    series = {alg: Series() for alg in algorithms}
    for round_index in range(rounds):
        shift = round_index % len(algorithms)
        for alg in [*algorithms[shift:], *algorithms[:shift]]:
            key, token, ring = keys[alg], tokens[alg], rings[alg]
            series[alg].sign.append(ops_per_second(functools.partial(sample_token, key), seconds))
            verify = functools.partial(verify_access_token, token, ring, OPTIONS, now=NOW)
            series[alg].verify.append(ops_per_second(verify, seconds))
    return series


def keygen_ms(alg: str, repeats: int) -> Spread:
    """Milliseconds to generate one key of ``alg``."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate_signing_key(alg, now=NOW)
        timings.append((time.perf_counter() - start) * 1000)
    return Spread.of(timings)


def table(algorithms: Sequence[str], series: dict[str, Series], keygen: dict[str, Spread]) -> str:
    """The Markdown table of docs/keys.md."""
    base = series.get(BASELINE)
    lines = [
        "| alg | sign ops/s | verify ops/s | sign ÷ ES256 | verify ÷ ES256 | token bytes | JWK bytes | keygen ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for alg in algorithms:
        s = series[alg]
        key = generate_signing_key(alg, now=NOW)
        size = len(sample_token(key))
        jwk = "—" if key.is_hmac else str(len(json.dumps(key.public_jwk(), separators=(",", ":"))))
        sign_ratio = ratios(s.sign, base.sign).fmt(2) if base else "—"
        verify_ratio = ratios(s.verify, base.verify).fmt(2) if base else "—"
        lines.append(
            f"| {alg} | {Spread.of(s.sign).fmt()} | {Spread.of(s.verify).fmt()} | {sign_ratio} | {verify_ratio} "
            f"| {size} | {jwk} | {keygen[alg].fmt(2)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.algorithms", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--sample", type=float, default=0.2, help="seconds per timed loop")
    parser.add_argument("--keygen", type=int, default=5, help="key generations timed per algorithm")
    parser.add_argument("--only", nargs="+", choices=sorted(ALGORITHMS), help="measure only these")
    args = parser.parse_args(argv)
    algorithms = [alg for alg in ORDER if not args.only or alg in args.only]
    series = measure(algorithms, args.rounds, args.sample)
    keygen = {alg: keygen_ms(alg, args.keygen) for alg in algorithms}
    print(
        f"keyturn signing algorithms: {args.rounds} interleaved rounds of {args.sample:g} s loops; "
        "median (min-max); ratios per round to ES256"
    )
    print()
    print(table(algorithms, series, keygen))


if __name__ == "__main__":
    main()
