#!/usr/bin/env bash
# Run the checks, then the whole test suite: unit, target process, Meltano end-to-end (needs
# PostgreSQL on 127.0.0.1:5432, user postgres, trust auth; override with PGHOST/PGPORT/PGUSER).
# The checks come first and all of them run: `ruff check`, `ruff format --check` and `mypy`.
# Any finding stops the script before pytest, with a non-zero exit.
# Creates ./.venv on first use. Extra arguments go to pytest only, e.g.
# `scripts/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

failed=()
check() {
  local name=$1
  shift
  echo "==> $name: $*"
  if "$@"; then
    echo "==> $name: ok"
  else
    echo "==> $name: FAILED"
    failed+=("$name")
  fi
}
check "lint" .venv/bin/ruff check .
check "format" .venv/bin/ruff format --check .
check "types" .venv/bin/mypy
if [ "${#failed[@]}" -gt 0 ]; then
  echo "==> checks failed: ${failed[*]}; not running pytest" >&2
  echo "    (many lint and all format findings fix themselves:" \
    ".venv/bin/ruff check --fix . && .venv/bin/ruff format .)" >&2
  exit 1
fi

echo "==> tests: pytest $*"
exec .venv/bin/python -m pytest "$@"
