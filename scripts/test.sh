#!/usr/bin/env bash
# Run the whole test suite: unit, target process, Meltano end-to-end (needs PostgreSQL on
# 127.0.0.1:5432, user postgres, trust auth; override with PGHOST/PGPORT/PGUSER).
# Creates ./.venv on first use. Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
