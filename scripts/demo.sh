#!/usr/bin/env bash
# `make demo`: the local stack with a simulated fleet. Migrates the local database, backfills
# two weeks of history for a simulated fleet, schedules maintenance, starts the ingestor, the
# API and the analytics loop in the background, streams half an hour of simulated live data
# (60x speed), runs one analytics pass and prints where to look. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=.demo
mkdir -p "$STATE"
export LIFTWATCH_DATABASE_URL="${LIFTWATCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/liftwatch}"
MQTT_PORT="${DEMO_MQTT_PORT:-18830}"   # the demo's own broker, with authentication on
export LIFTWATCH_METRICS_PORT="${LIFTWATCH_METRICS_PORT:-9464}"
export LIFTWATCH_API_PORT="${LIFTWATCH_API_PORT:-8000}"
UNITS="${DEMO_UNITS:-60}"
DEMO_PASSWORD="demo-password-$(hostname | cut -c1-6)"   # development only; printed below

step() { printf '\n== %s\n' "$*"; }

start_bg() {  # name, command...
    local name=$1; shift
    if [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
        echo "$name already running (pid $(cat "$STATE/$name.pid"))"
        return
    fi
    nohup "$@" >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/$name.pid"
    echo "$name started (pid $!, log $STATE/$name.log)"
}

step "database schema"
"$BIN/liftwatch" db migrate

step "broker with authentication (port $MQTT_PORT): one login per service, ACL from liftwatch devices"
export LIFTWATCH_BROKER_PASSWD_FILE="$STATE/broker/passwd" LIFTWATCH_BROKER_ACL_FILE="$STATE/broker/acl"
mkdir -p "$STATE/broker/data"
for account in ingest simulator; do
    if [ ! -f "$STATE/broker/$account.secret" ]; then
        "$BIN/liftwatch" devices provision "$account" | sed -n 's/^password: //p' >"$STATE/broker/$account.secret"
        chmod 600 "$STATE/broker/$account.secret"
    fi
done
cat >"$STATE/broker/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous false
password_file $PWD/$STATE/broker/passwd
acl_file $PWD/$STATE/broker/acl
persistence true
persistence_location $PWD/$STATE/broker/data/
max_queued_messages 0
max_inflight_messages 0
$( [ "$(id -u)" = 0 ] && echo "user root" )
CONF
if ! (exec 3<>/dev/tcp/127.0.0.1/"$MQTT_PORT") 2>/dev/null; then
    mosquitto -c "$STATE/broker/mosquitto.conf" >"$STATE/broker.log" 2>&1 &
    echo $! >"$STATE/broker.pid"
    sleep 1
fi
INGEST_URL="mqtt://ingest:$(cat "$STATE/broker/ingest.secret")@127.0.0.1:$MQTT_PORT"
export LIFTWATCH_MQTT_URL="mqtt://simulator:$(cat "$STATE/broker/simulator.secret")@127.0.0.1:$MQTT_PORT"

step "registry and two weeks of history for $UNITS simulated units"
if [ ! -f "$STATE/history.done" ]; then
    "$BIN/liftwatch" simulate fleet --units "$UNITS" --duration 0 --history-days 14 --faulty 0.15 --comm-loss-per-day 0.05 \
        --degradation-ramp 5d --seed 7 --truth "$STATE/truth-history.json"
    touch "$STATE/history.done"
else
    echo "history already written (rm $STATE/history.done to redo)"
fi
"$BIN/liftwatch" units import deploy/demo/units.csv

step "maintenance plans and work orders"
"$BIN/liftwatch" maintenance schedule
if ! psql "$LIFTWATCH_DATABASE_URL" -Atc "SELECT 1 FROM users WHERE username = 'supervisor'" | grep -q 1; then
    echo "$DEMO_PASSWORD" | "$BIN/liftwatch" users add --username supervisor --name "Demo Supervisor" \
        --role supervisor --password-stdin
fi

step "services"
start_bg ingest env LIFTWATCH_MQTT_URL="$INGEST_URL" "$BIN/liftwatch" ingest --client-id liftwatch-demo-ingest
start_bg api "$BIN/liftwatch" api
start_bg analytics "$BIN/liftwatch" analytics loop --every 60s
sleep 3

step "30 simulated minutes of live traffic (60x), with a few malformed messages"
"$BIN/liftwatch" simulate fleet --units "$UNITS" --duration 30m --speedup 60 --faulty 0.15 --seed 7 --comm-loss-per-day 0.05 \
    --bad-fraction 0.002 --truth "$STATE/truth-live.json"

step "an analytics pass"
sleep 2
"$BIN/liftwatch" analytics run

cat <<MSG

Liftwatch demo is running.
  dashboard        http://127.0.0.1:${LIFTWATCH_API_PORT}/dashboard   (log in as supervisor / ${DEMO_PASSWORD}; ?lang=en for English)
  public QR page   http://127.0.0.1:${LIFTWATCH_API_PORT}/u/SIM-00001   (no login; the car's notice: /u/SIM-00001/notice)
  API + OpenAPI    http://127.0.0.1:${LIFTWATCH_API_PORT}/docs   (log in as supervisor / ${DEMO_PASSWORD})
  unit status      curl -s -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:${LIFTWATCH_API_PORT}/api/v1/units/SIM-00001/status
  metrics          http://127.0.0.1:${LIFTWATCH_METRICS_PORT}/metrics
  broker           127.0.0.1:${MQTT_PORT}, authentication on (anonymous refused); logins: $BIN/liftwatch devices list
  open alerts      psql "$LIFTWATCH_DATABASE_URL" -c "SELECT unit_id, kind, severity, reason FROM alerts WHERE status = 'open' ORDER BY severity, kind"
  rejected input   $BIN/liftwatch rejects
  ledger           $BIN/liftwatch ledger verify
  logs             $STATE/{ingest,api,analytics}.log
  stop             kill \$(cat $STATE/*.pid)   (the broker too)
MSG
