"""``python -m bench``: run the suite and write ``bench/results/latest.{md,png,json}``.

Run from the repository root (the Python peers are imported as ``bench.apps.*``). ``bash
bench/run.sh`` installs the prerequisites first; this entry point only checks for them, so that a
missing tool fails in the first second rather than after minutes of measuring.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from bench.floor import ALGORITHMS, FloorSettings
from bench.harness import Settings
from bench.report import write_report
from bench.servers import EXPRESS_DIR, REPO_ROOT
from bench.suite import PARTS, Part, SuiteConfig, run_suite
from bench.wrk import LoadSettings


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line knobs; the defaults are what ``make bench`` runs."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds per HTTP comparison")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded warm-up seconds per server")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the machine has 2 cores)")
    parser.add_argument("--unique-tokens", type=int, default=60_000, help="tokens in each unique-token list")
    parser.add_argument("--storm-connections", type=int, default=16, help="wrk connections of a login storm")
    parser.add_argument("--floor-rounds", type=int, default=5, help="interleaved rounds per token operation")
    parser.add_argument("--floor-sample", type=float, default=0.1, help="seconds per timed token-operation loop")
    parser.add_argument(
        "--match", nargs="+", default=[], metavar="GLOB", help="only comparisons whose key matches (e.g. 'guard-*')"
    )
    parser.add_argument("--algorithms", nargs="+", default=None, help="floor: only these JWS algorithms")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results", help="output directory")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> SuiteConfig:
    """Turn parsed arguments into the suite's configuration."""
    load = LoadSettings(duration_s=args.duration, connections=args.connections, threads=args.threads)
    settings = Settings(load=load, rounds=args.rounds, warmup_s=args.warmup, work_dir=args.out / "work")
    return SuiteConfig(
        settings=settings,
        floor=FloorSettings(sample_s=args.floor_sample, rounds=args.floor_rounds),
        parts=cast(list[Part], args.only),
        unique_tokens=args.unique_tokens,
        storm_connections=args.storm_connections,
        match=args.match,
        floor_algorithms=args.algorithms or ALGORITHMS,
    )


def missing_prerequisites(parts: Sequence[Part]) -> list[str]:
    """What ``bench/run.sh`` would have installed, if anything is absent."""
    if not {"http", "storm"} & set(parts):
        return []
    missing = [f"{tool} (apt-get install -y {tool})" for tool in ("wrk", "node") if shutil.which(tool) is None]
    if not (EXPRESS_DIR / "node_modules" / "express").is_dir():
        missing.append("bench/express/node_modules (cd bench/express && npm ci)")
    return missing


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Turn `timeout`'s SIGTERM into SystemExit so every ``finally`` stops its server group."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, report, and print where the report went."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = config_from(args)
    missing = missing_prerequisites(config.parts)
    if missing:
        print("missing: " + "; ".join(missing) + " -- `bash bench/run.sh` installs them", file=sys.stderr)
        return 2
    started = time.monotonic()
    result = run_suite(config, progress=lambda line: print(line, flush=True))
    for path in write_report(result, args.out):
        print(f"wrote {path}")
    print(f"bench finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
