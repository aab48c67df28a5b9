#!/usr/bin/env bash
# `make demo`: migrate the local database, load the demo registry, start the ingestor against
# the local broker, publish a short demo stream, and print where to look. The fleet simulator
# (issue #4), API (#5) and analytics (#6) join here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=.demo
mkdir -p "$STATE"
export LIFTWATCH_DATABASE_URL="${LIFTWATCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/liftwatch}"
export LIFTWATCH_MQTT_URL="${LIFTWATCH_MQTT_URL:-mqtt://127.0.0.1:1883}"
export LIFTWATCH_METRICS_PORT="${LIFTWATCH_METRICS_PORT:-9464}"

"$BIN/liftwatch" db migrate
"$BIN/liftwatch" units import deploy/demo/units.csv

if [ -f "$STATE/ingest.pid" ] && kill -0 "$(cat "$STATE/ingest.pid")" 2>/dev/null; then
    echo "ingestor already running (pid $(cat "$STATE/ingest.pid"))"
else
    nohup "$BIN/liftwatch" ingest --client-id liftwatch-demo-ingest >"$STATE/ingest.log" 2>&1 &
    echo $! >"$STATE/ingest.pid"
    sleep 2
fi

"$BIN/python" scripts/demo_publish.py

cat <<MSG

Liftwatch demo is running.
  ingestor         pid $(cat "$STATE/ingest.pid"), log $STATE/ingest.log
  metrics          http://127.0.0.1:${LIFTWATCH_METRICS_PORT}/metrics
  rows             psql "$LIFTWATCH_DATABASE_URL" -c 'SELECT unit_id, count(*), max(time) FROM telemetry GROUP BY 1'
  rejected input   $BIN/liftwatch rejects
  open alerts      psql "$LIFTWATCH_DATABASE_URL" -c "SELECT unit_id, kind, reason FROM alerts WHERE status = 'open'"
  stop             kill \$(cat $STATE/ingest.pid)
MSG
