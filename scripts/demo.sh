#!/usr/bin/env bash
# The main job on the embedded default: sample Snowplow events (as Snowplow's S3 loader writes
# them) -> tap-snowplow-files -> target-miso -> the local Miso-compatible sandbox API, run by
# Meltano. Needs only Python 3.10+. Everything it writes is under output/demo/.
# Repeatable: each run starts afresh (output/demo is recreated, the run is --full-refresh and
# the sandbox starts empty), so a second run sends and shows the same interactions again.
# DEMO_PORT picks another port for the sandbox (default 8787).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

DEMO=output/demo
PORT="${DEMO_PORT:-8787}"
export TARGET_MISO_API_KEY=sandbox-secret-key   # the sandbox's key; never a real one here
export TARGET_MISO_API_URL="http://127.0.0.1:${PORT}"
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=false

rm -rf "$DEMO"
mkdir -p "$DEMO"
echo "==> Writing sample Snowplow events to $DEMO/events (gzip enriched TSV)"
.venv/bin/python -m target_miso.samples "$DEMO/events"

echo "==> Installing the pipeline's plugins (first time only)"
.venv/bin/meltano install tap-snowplow-files target-miso >"$DEMO/install.log" 2>&1 \
  || { cat "$DEMO/install.log"; exit 1; }

echo "==> Starting the sandbox API on $TARGET_MISO_API_URL"
# (SO_REUSEADDR as the server sets it: a port left in TIME_WAIT by a previous run is free.)
.venv/bin/python -c "import socket as s, sys; p = s.socket()
p.setsockopt(s.SOL_SOCKET, s.SO_REUSEADDR, 1); p.bind(('127.0.0.1', int(sys.argv[1])))" "$PORT" \
  2>/dev/null || { echo "Port $PORT is in use: stop what runs there or set DEMO_PORT"; exit 1; }
.venv/bin/target-miso-sandbox --port "$PORT" --api-key "$TARGET_MISO_API_KEY" \
  --capture "$DEMO/received.jsonl" >"$DEMO/sandbox.log" 2>&1 &
SANDBOX_PID=$!
trap 'kill "$SANDBOX_PID" 2>/dev/null || true' EXIT
ready=
for _ in $(seq 1 100); do
  kill -0 "$SANDBOX_PID" 2>/dev/null || { cat "$DEMO/sandbox.log"; exit 1; }
  .venv/bin/python -c "import urllib.request as u, sys; u.urlopen(sys.argv[1], timeout=1)" \
    "$TARGET_MISO_API_URL/_sandbox/stats" \
    2>/dev/null && { ready=1; break; }
  sleep 0.1
done
[ -n "$ready" ] \
  || { cat "$DEMO/sandbox.log"; echo "The sandbox did not answer on $TARGET_MISO_API_URL"; exit 1; }

echo "==> meltano --environment=demo run --full-refresh tap-snowplow-files target-miso"
.venv/bin/meltano --environment=demo run --full-refresh tap-snowplow-files target-miso \
  >"$DEMO/meltano.log" 2>&1 || { tail -n 40 "$DEMO/meltano.log"; exit 1; }

echo
echo "==> target-miso's run summary"
# Meltano prefixes the target's log lines; show the summary block as the target wrote it.
sed -n '/Run summary:/,/elapsed:/p' "$DEMO/meltano.log" | sed 's/^.*\] target-miso  *//'
echo
.venv/bin/python - "$DEMO/received.jsonl" <<'PY'
import collections, json, sys
received = [json.loads(line) for line in open(sys.argv[1])]
print(f"The sandbox received {len(received)} interactions:")
for kind, count in sorted(collections.Counter(item["type"] for item in received).items()):
    print(f"  {kind:<26} {count}")
PY
echo
echo "Look at what arrived:  $DEMO/received.jsonl   (one interaction per line, as the API got it)"
echo "Records set aside:     $DEMO/miso-rejects.jsonl (only if any were)"
echo "The whole Meltano log: $DEMO/meltano.log"
