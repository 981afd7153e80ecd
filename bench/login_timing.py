"""Can a stranger tell a registered e-mail from an unknown one by how long a failed login takes?

``python -m bench.login_timing`` starts ``keyturn serve`` (production argon2id profile, the
OWASP parameters) on loopback, registers one account, then times failed logins over one
keep-alive connection, interleaved in random order within each round:

* ``known``   — the registered e-mail with a wrong password (one real argon2 verification);
* ``unknown`` — a never-registered e-mail (verified against the dummy hash of the same cost);
* ``malformed`` — not an e-mail at all (same dummy verification), for reference.

It reports the median of each, the ratio ``unknown / known`` of the medians and the spread of
the per-round ratios (rounds cancel out a slow spell of the machine that hits both alike), and
exits non-zero if the ratio of medians leaves 0.9-1.1. The login rate limits are lifted for the
run: this measures the verification path, which is what an attacker probing slowly would see.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.servers import REPO_ROOT, ServerSpec, running
from bench.stats import Spread

KINDS = ("known", "unknown", "malformed")
KNOWN = "known-user@example.com"
PASSWORD = "correct horse battery staple"
BOUNDS = (0.9, 1.1)


@dataclass(frozen=True)
class Result:
    """What a run found (times in milliseconds)."""

    rounds: int
    median_ms: dict[str, float]
    p10_p90_ms: dict[str, tuple[float, float]]
    ratio_of_medians: float
    round_ratio_median: float
    round_ratio_p10_p90: tuple[float, float]
    malformed_ratio: float
    within_bounds: bool


def keyturn_spec(data_dir: Path) -> ServerSpec:
    """``keyturn serve`` as shipped: OWASP argon2id, limits lifted for the measurement."""
    return ServerSpec(
        name="keyturn-login-timing",
        argv=[str(Path(sys.executable).with_name("keyturn")), "serve", "--host", "127.0.0.1", "--port", "{port}"],
        ready_path="/healthz",
        env={
            "KEYTURN_DATA_DIR": str(data_dir),
            "KEYTURN_PASSWORD_PROFILE": "owasp",
            "KEYTURN_RATE_LIMIT_LOGIN": "1000000/minute",
            "KEYTURN_RATE_LIMIT_LOGIN_IP": "1000000/minute",
            "KEYTURN_LOG_LEVEL": "warning",
        },
        cwd=REPO_ROOT,
    )


def _body(kind: str, index: int) -> dict[str, str]:
    wrong = "wrong " + secrets.token_urlsafe(12)
    email = {"known": KNOWN, "unknown": f"ghost-{index}-{secrets.token_hex(4)}@example.com", "malformed": "ghost"}
    return {"email": email[kind], "password": wrong}


def _timed_login(client: httpx.Client, body: dict[str, str], reference: list[bytes]) -> float:
    """Seconds for one failed login; every failure must be the same 401 body."""
    started = time.perf_counter()
    answer = client.post("/auth/login", json=body)
    elapsed = time.perf_counter() - started
    if answer.status_code != 401:
        raise RuntimeError(f"expected 401, got {answer.status_code}: {answer.text}")
    if not reference:
        reference.append(answer.content)
    elif answer.content != reference[0]:
        raise RuntimeError("failed logins answered with different bodies")
    return elapsed


def measure(base_url: str, rounds: int, warmup: int, seed: int) -> dict[str, list[float]]:
    """Per-kind login times (seconds), ``rounds`` each, interleaved in shuffled order per round."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    reference: list[bytes] = []
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post("/auth/register", json={"email": KNOWN, "password": PASSWORD}).raise_for_status()
        for index in range(warmup + rounds):
            order = list(KINDS)
            rng.shuffle(order)
            for kind in order:
                elapsed = _timed_login(client, _body(kind, index), reference)
                if index >= warmup:
                    samples[kind].append(elapsed)
    return samples


def _p10_p90(values: Sequence[float]) -> tuple[float, float]:
    deciles = statistics.quantiles(values, n=10)
    return deciles[0], deciles[-1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summarise(samples: dict[str, list[float]]) -> Result:
    """Medians and deciles per kind; the unknown/known ratio two ways (of medians, per round)."""
    median = {kind: statistics.median(values) * 1000 for kind, values in samples.items()}
    deciles = {kind: _p10_p90(values) for kind, values in samples.items()}
    per_round = [u / k for u, k in zip(samples["unknown"], samples["known"], strict=True)]
    ratio = median["unknown"] / median["known"]
    round_low, round_high = _p10_p90(per_round)
    return Result(
        rounds=len(per_round),
        median_ms={k: round(v, 3) for k, v in median.items()},
        p10_p90_ms={kind: (_ms(low), _ms(high)) for kind, (low, high) in deciles.items()},
        ratio_of_medians=round(ratio, 4),
        round_ratio_median=round(Spread.of(per_round).median, 4),
        round_ratio_p10_p90=(round(round_low, 4), round(round_high, 4)),
        malformed_ratio=round(median["malformed"] / median["known"], 4),
        within_bounds=BOUNDS[0] <= ratio <= BOUNDS[1],
    )


def report(result: Result) -> str:
    """The human-readable table printed at the end of a run."""
    lines = [
        f"login timing, {result.rounds} interleaved rounds, argon2id OWASP profile",
        "kind        median ms   p10-p90 ms",
    ]
    for kind in KINDS:
        low, high = result.p10_p90_ms[kind]
        lines.append(f"{kind:<11} {result.median_ms[kind]:>9.2f}   {low:.2f}-{high:.2f}")
    low, high = result.round_ratio_p10_p90
    lines += [
        f"unknown/known: ratio of medians {result.ratio_of_medians:.3f}; per round median "
        f"{result.round_ratio_median:.3f} (p10-p90 {low:.3f}-{high:.3f})",
        f"malformed/known: {result.malformed_ratio:.3f}",
        f"within {BOUNDS[0]}-{BOUNDS[1]}: {'yes' if result.within_bounds else 'NO'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement; exit status 1 when the ratio leaves the bounds."""
    parser = argparse.ArgumentParser(prog="python -m bench.login_timing", description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="measured rounds (one login of each kind)")
    parser.add_argument("--warmup", type=int, default=20, help="discarded rounds first")
    parser.add_argument("--seed", type=int, default=7, help="seed of the per-round shuffle")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "login_timing.json")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="keyturn-timing-") as tmp,
        running(keyturn_spec(Path(tmp) / "data"), Path(tmp) / "logs") as server,
    ):
        samples = measure(server.base_url, args.rounds, args.warmup, args.seed)
    result = summarise(samples)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print(report(result))
    return 0 if result.within_bounds else 1


if __name__ == "__main__":
    sys.exit(main())
