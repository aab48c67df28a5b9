#!/usr/bin/env bash
# `make demo`: the local stack with a simulated city fleet and the whole maintenance loop.
#
#  1. schema; a broker with one login per service
#  2. the registry and two weeks of telemetry history for a simulated fleet (every unit kind),
#     plus a hand-made registry file (deploy/demo/units.csv)
#  3. go-live: the fleet's maintenance archive from before (paper boxes, a previous system)
#     imported as legacy records; plans and work orders for every unit of every kind
#  4. the API and the ingestor; the simulated technicians' accounts and signing keys
#  5. the two weeks of visits recorded at their own times (real signatures, ledger entries):
#     genuine ones, skipped ones that turn overdue, some never countersigned, some without
#     inspection mode on site
#  6. today: the fleet goes live over MQTT and simulated technicians do a few visits through
#     the HTTP API while it runs (one genuine on a lift, one on an escalator, one made without
#     inspection mode, one the user unit does not countersign)
#  7. an analytics pass; the analytics loop keeps running; prints where to look
#
# Safe to run again (history and legacy import happen once; today's visits are new each run).
# Sizes and ports come from the environment (DEMO_UNITS, DEMO_HISTORY_DAYS, DEMO_STATE,
# DEMO_MQTT_PORT, LIFTWATCH_API_PORT, LIFTWATCH_METRICS_PORT) so a test can run it small.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DEMO_BIN:-.venv/bin}
STATE=${DEMO_STATE:-.demo}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
export LIFTWATCH_DATABASE_URL="${LIFTWATCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/liftwatch}"
MQTT_PORT="${DEMO_MQTT_PORT:-18830}"   # the demo's own broker, with authentication on
export LIFTWATCH_METRICS_PORT="${LIFTWATCH_METRICS_PORT:-9464}"
export LIFTWATCH_API_PORT="${LIFTWATCH_API_PORT:-8000}"
API="http://127.0.0.1:${LIFTWATCH_API_PORT}"
UNITS="${DEMO_UNITS:-60}"
HISTORY_DAYS="${DEMO_HISTORY_DAYS:-14}"
VISIT_S="${DEMO_VISIT_SECONDS:-45}"
SEED=7
SIM=(--units "$UNITS" --seed "$SEED")
DEMO_PASSWORD="demo-password-$(hostname | cut -c1-6)"   # development only; printed below
T0=$(date +%s)

step() { printf '\n== [%3ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
sql() { psql "$LIFTWATCH_DATABASE_URL" -XAtqc "$1"; }

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

stop_bg() {  # name: SIGTERM, then wait until it has finished what it was sending
    local pid
    if [ -f "$STATE/$1.pid" ] && pid=$(cat "$STATE/$1.pid") && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
        echo "$1 stopped (it is restarted below)"
    fi
}

wait_http() {  # url: the API answers
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "no answer from $1 (see $STATE/api.log)" >&2
    return 1
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
password_file $STATE/broker/passwd
acl_file $STATE/broker/acl
persistence true
persistence_location $STATE/broker/data/
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

step "registry and $HISTORY_DAYS days of telemetry history for $UNITS simulated units (every kind)"
if [ ! -f "$STATE/history.done" ]; then
    "$BIN/liftwatch" simulate fleet "${SIM[@]}" --duration 0 --history-days "$HISTORY_DAYS" --faulty 0.15 \
        --comm-loss-per-day 0.05 --degradation-ramp 5d --truth "$STATE/truth-history.json" --quiet
    date -u +%Y-%m-%dT%H:%M:%SZ >"$STATE/history.end"
fi
"$BIN/liftwatch" units import deploy/demo/units.csv
echo "units by kind: $(sql "SELECT string_agg(kind || ' ' || n, ', ' ORDER BY n DESC) FROM (SELECT kind, count(*) AS n FROM units GROUP BY kind) k")"

GO_LIVE=$(date -u -d "@$(( $(date +%s) - HISTORY_DAYS * 86400 ))" +%Y-%m-%dT%H:%M:%SZ)
step "go-live $GO_LIVE: the fleet's maintenance archive imported as legacy records (not e-signed)"
if [ ! -f "$STATE/legacy.done" ]; then  # once: a later go-live would re-import visits recorded since as signed
    "$BIN/liftwatch" simulate legacy "${SIM[@]}" --go-live "$GO_LIVE" --fraction 0.8 --out "$STATE/legacy.csv"
    # the hand-made units come with their archive too; DEMO-001's last visit was 40 days ago
    d() { date -d "$1 days ago" +%F; }
    cat >>"$STATE/legacy.csv" <<CSV
DEMO-001,half_monthly,$(d 40),MC-SHENDA,陈志强,T0000000101,申达档案室 2026 盒 10,,,
DEMO-002,half_monthly,$(d 9),MC-SHENDA,陈志强,T0000000101,申达档案室 2026 盒 11,,,
DEMO-003,half_monthly,$(d 12),MC-HUALI,刘海涛,,,华力维保系统,HL-$(d 12 | tr -d -)-003,
DEMO-004,half_monthly,$(d 5),MC-HUALI,赵建军,T0000000202,,华力维保系统,HL-$(d 5 | tr -d -)-004,
DEMO-005,quarterly,$(d 70),MC-HUALI,赵建军,T0000000202,,华力维保系统,HL-$(d 70 | tr -d -)-005,
DEMO-006,half_monthly,$(d 18),MC-SHENDA,陈志强,T0000000101,申达档案室 2026 盒 11,,,
CSV
    "$BIN/liftwatch" maintenance import "$STATE/legacy.csv"
    touch "$STATE/legacy.done"
else
    echo "archive already imported ($STATE/legacy.csv)"
fi
"$BIN/liftwatch" maintenance schedule
echo "plans by unit kind: $(sql "SELECT string_agg(kind || ' ' || n, ', ' ORDER BY kind) FROM (SELECT u.kind, count(*) AS n FROM maintenance_plans p JOIN units u USING (unit_id) GROUP BY u.kind) k")"
if ! sql "SELECT 1 FROM users WHERE username = 'supervisor'" | grep -q 1; then
    echo "$DEMO_PASSWORD" | "$BIN/liftwatch" users add --username supervisor --name "Demo Supervisor" \
        --role supervisor --password-stdin
fi

step "services: API and ingestor"
start_bg api "$BIN/liftwatch" api
start_bg ingest env LIFTWATCH_MQTT_URL="$INGEST_URL" "$BIN/liftwatch" ingest --client-id liftwatch-demo-ingest
wait_http "$API/healthz"

step "simulated technicians and safety managers: accounts and Ed25519 keys (enrolled through the API)"
"$BIN/liftwatch" simulate technicians "${SIM[@]}" --api-url "$API" --accounts "$STATE/sim-accounts.json" \
    --bootstrap-only --quiet

step "the last $HISTORY_DAYS days of visits, recorded at their own times (signatures, countersignatures, ledger)"
if [ ! -f "$STATE/history-visits.done" ]; then
    "$BIN/liftwatch" simulate past-visits "${SIM[@]}" --days "$HISTORY_DAYS" --accounts "$STATE/sim-accounts.json"
    "$BIN/liftwatch" maintenance schedule
    touch "$STATE/history.done" "$STATE/history-visits.done"
else
    echo "already recorded (rm $STATE/history*.done and drop the database to start over)"
fi

step "today: the fleet goes live over MQTT; technicians visit four units through the HTTP API"
"$BIN/liftwatch" simulate technicians "${SIM[@]}" --plan-only --now genuine,genuine,unverified,missing_countersign \
    --now-in 20s --visit-length "${VISIT_S}s" --out "$STATE/today.json"
stop_bg fleet
start_bg fleet "$BIN/liftwatch" simulate fleet "${SIM[@]}" --duration "${DEMO_FLEET_HOURS:-8}h" \
    --speedup 1 --faulty 0.15 --degradation-ramp 5d --bad-fraction 0.003 --visits "$STATE/today.json" --quiet
"$BIN/liftwatch" simulate technicians "${SIM[@]}" --visits "$STATE/today.json" --speedup 1 \
    --duration "$(( VISIT_S + 60 ))s" --api-url "$API" --accounts "$STATE/sim-accounts.json" \
    --truth "$STATE/truth-today.json" --quiet

step "an analytics pass; then the analytics loop keeps going"
sleep 2
"$BIN/liftwatch" analytics run
start_bg analytics "$BIN/liftwatch" analytics loop --every 60s

# a record to verify by hand: today's first genuine visit (driven over HTTP, confirmed by telemetry)
RECORD=$("$BIN/python" -c "import json, sys; t = json.load(open(sys.argv[1])); print(next((v['work_order_id'] for v in t['visits'] if v['case'] == 'genuine' and v['status'] == 'closed'), ''))" "$STATE/truth-today.json")
RECORD=${RECORD:-$(sql "SELECT work_order_id FROM work_orders WHERE status = 'closed' ORDER BY closed_at DESC LIMIT 1")}
ESC=$(sql "SELECT w.work_order_id FROM work_orders w JOIN units u USING (unit_id) WHERE w.status = 'closed' AND u.kind = 'escalator' ORDER BY w.closed_at DESC LIMIT 1")
OVERDUE=$(sql "SELECT unit_id FROM alerts WHERE status = 'open' AND kind = 'maintenance_overdue' ORDER BY severity, unit_id LIMIT 1")
step "ready in $(( $(date +%s) - T0 )) s"
sql "SELECT '  open alerts: ' || string_agg(kind || ' ' || n, ', ' ORDER BY n DESC) FROM (SELECT kind, count(*) AS n FROM alerts WHERE status = 'open' GROUP BY kind) a"
sql "SELECT '  signed records: ' || count(*) FILTER (WHERE status IN ('signed', 'closed')) || ' (' || count(*) FILTER (WHERE status = 'closed') || ' countersigned); ledger entries: ' || (SELECT count(*) FROM ledger) || '; legacy records imported: ' || (SELECT count(*) FROM legacy_maintenance) FROM work_orders"

cat <<MSG

Liftwatch demo is running.
  dashboard        $API/dashboard   (log in as supervisor / ${DEMO_PASSWORD}; ?lang=en for English)
  overdue list     $API/dashboard?kind=maintenance_overdue   and the on-time KPI: $API/kpi/maintenance
  a unit overdue   $API/units/${OVERDUE:-DEMO-001}   (its imported archive is shown as imported, never as signed)
  an escalator     $API/units/$(sql "SELECT unit_id FROM work_orders WHERE work_order_id = ${ESC:-0}")   (Annex D checklist, signed history)
  public QR page   $API/u/SIM-00001   (no login; the car's notice: /u/SIM-00001/notice)
  API + OpenAPI    $API/docs

  verify a signed record by hand (work order $RECORD; needs only cryptography + rfc8785):
    TOKEN=\$(curl -s -d username=supervisor -d password=${DEMO_PASSWORD} $API/api/v1/auth/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s -H "Authorization: Bearer \$TOKEN" $API/api/v1/work-orders/$RECORD/record | $BIN/python scripts/verify-record.py
  the whole ledger $BIN/liftwatch ledger verify

  metrics          http://127.0.0.1:${LIFTWATCH_METRICS_PORT}/metrics
  broker           127.0.0.1:${MQTT_PORT}, authentication on (anonymous refused); logins: $BIN/liftwatch devices list
  rejected input   $BIN/liftwatch rejects
  logs             $STATE/{ingest,api,analytics,fleet}.log
  stop             kill \$(cat $STATE/*.pid)   (the broker and the live fleet too)
MSG
