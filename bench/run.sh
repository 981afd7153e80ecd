#!/usr/bin/env bash
# Entry point of `make bench`: install what the benchmark compares against, then run it.
#
# Installs only what is missing: wrk, node and npm from Debian's packages (as root), the Express
# peer's packages with `npm ci` from its committed lock file, and the project's `bench` extra into
# the venv (matplotlib for the chart, py-spy for bench/profile.py). PostgreSQL must be listening on
# 127.0.0.1:5432 (user postgres, trust), as for the tests: the refresh comparison makes a throwaway
# database there. Then runs `python -m bench` with any arguments given here (see `--help`), under a hard
# time limit so that a hung server can never hold a machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
TIME_LIMIT="${BENCH_TIME_LIMIT:-20m}"

apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "bench: need $* (install them from your distribution's packages)" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bench: installing ${missing[*]} from Debian's packages"
  apt_install "${missing[@]}"
fi

# npm ci recreates node_modules exactly from package-lock.json; skip it when that already happened.
lock=bench/express/package-lock.json
stamp=bench/express/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
  (cd bench/express && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! "$PYTHON" -c "import matplotlib" 2>/dev/null; then
  # The project's `bench` extra: matplotlib (the chart) and py-spy (bench/profile.py).
  "$PYTHON" -m pip install --quiet -e '.[bench]'
fi

exec timeout --signal=TERM --kill-after=30s "$TIME_LIMIT" "$PYTHON" -m bench "$@"
