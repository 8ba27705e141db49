#!/usr/bin/env bash
# The service's main job on a simulated fleet:
#   1. install what is missing and start InfluxDB on loopback (Debian's influxdb, no systemd,
#      data in ./var);
#   2. simulate yesterday's fleet with its ground-truth labels, ingest it, run the detectors over
#      it and score them against the labels;
#   3. start a local Alertmanager (Debian's, on loopback, the generated alertmanager.yml) and a
#      small webhook receiver (scripts/receiver.py) standing in for the on-call's pager;
#   4. start `chargewatch serve` and drive a live fleet into it over OCPP (1.6 and 2.0.1 mixed);
#      when the live stations hang up they go silent, and each pages as StationOffline (with
#      whatever else the live fleet's findings raised); the pages that reach the receiver are
#      printed; then stop the service, Alertmanager and the receiver.
# STATIONS=200 SEED=7 LIVE_STATIONS=20 PORT=8000 scripts/demo.sh to change the fleets;
# AM_PORT and RECEIVER_PORT (default: free ports) for Alertmanager and the receiver;
# PAGE_WAIT_S (default 240) bounds the wait for the first page. With CHARGEWATCH_ALERT_WEBHOOK_URL
# set, pages go there instead and the demo does not wait for them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export CHARGEWATCH_DATA_DIR="${CHARGEWATCH_DATA_DIR:-$PWD/var}"
mkdir -p "$CHARGEWATCH_DATA_DIR"
cw=.venv/bin/chargewatch
py=.venv/bin/python
data="$CHARGEWATCH_DATA_DIR"
port="${PORT:-8000}"
free_port() { $py -c "from chargewatch.influx.server import free_port; print(free_port())"; }

$cw influxd start
# --close-open: yesterday's sessions still charging at midnight are stopped there; left open,
# each would be a day of missing readings next to the live fleet's data of today.
$cw simulate --stations "${STATIONS:-100}" --hours 24 --seed "${SEED:-1}" \
    --start "$(date -u -d yesterday +%Y-%m-%dT00:00:00Z)" \
    --out "$data/fleet.jsonl" --labels "$data/labels.jsonl" --close-open
$cw ingest "$data/fleet.jsonl"
$cw detect --input "$data/fleet.jsonl" --output "$data/flags.jsonl"
$cw evaluate --flags "$data/flags.jsonl" --labels "$data/labels.jsonl" --events "$data/fleet.jsonl"

# Alerting. The scheduled job (detection, then the alert cycle) every 10 s; stations asked to
# heartbeat every 10 s, so one silent for 3 x 10 s is offline (liveness sampled every 5 s:
# 30 s > 10 s + 5 s, no false alarm for a station keeping to its interval).
am_port="${AM_PORT:-$(free_port)}"
export CHARGEWATCH_ALERTMANAGER_URLS="${CHARGEWATCH_ALERTMANAGER_URLS:-http://127.0.0.1:$am_port}"
export CHARGEWATCH_DETECT_INTERVAL_S="${CHARGEWATCH_DETECT_INTERVAL_S:-10}"
export CHARGEWATCH_OCPP_HEARTBEAT_INTERVAL_S="${CHARGEWATCH_OCPP_HEARTBEAT_INTERVAL_S:-10}"
export CHARGEWATCH_OCPP_LIVENESS_SAMPLE_S="${CHARGEWATCH_OCPP_LIVENESS_SAMPLE_S:-5}"
pages="$data/pages.jsonl"
receiver_pid=""
serve_pid=""
am_started=""
cleanup() {
    [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" || true
    [ -n "$am_started" ] && $cw alertmanager stop >/dev/null 2>&1 || true
    [ -n "$receiver_pid" ] && kill -TERM "$receiver_pid" 2>/dev/null && wait "$receiver_pid" || true
}
trap cleanup EXIT
if [ -z "${CHARGEWATCH_ALERT_WEBHOOK_URL:-}" ]; then
    receiver_port="${RECEIVER_PORT:-$(free_port)}"
    : >"$pages"
    $py scripts/receiver.py listen --port "$receiver_port" --out "$pages" &
    receiver_pid=$!
    export CHARGEWATCH_ALERT_WEBHOOK_URL="http://127.0.0.1:$receiver_port/page"
fi
am_started=yes
$cw alertmanager start
echo "pages go to $CHARGEWATCH_ALERT_WEBHOOK_URL"

echo "starting chargewatch serve on 127.0.0.1:$port"
$cw serve --port "$port" &
serve_pid=$!
health() { $py -c "import httpx, sys; print(httpx.get(sys.argv[1]).raise_for_status().text)" "http://127.0.0.1:$port/healthz"; }
for _ in $(seq 100); do
    health >/dev/null 2>&1 && break
    sleep 0.2
done
$cw simulate --stations "${LIVE_STATIONS:-10}" --hours 2 --seed "${SEED:-1}" \
    --start "$(date -u -d '2 hours ago' +%Y-%m-%dT%H:00:00Z)" \
    --out "$data/live.jsonl" --labels "$data/live-labels.jsonl" \
    --live "ws://127.0.0.1:$port/ocpp" --speed 600
health

if [ -n "$receiver_pid" ]; then
    # Offline after 30 s of silence, seen at the next cycle (10 s), then Alertmanager's
    # group_wait (30 s for pages): about a minute and a quarter. Findings of the fleets may
    # arrive before (their alerts started long ago: Alertmanager sends those without waiting).
    # (Run again on the same ./var, the stations were offline since the last run: they paged
    # when serve started, and page again only after Alertmanager's group_interval.)
    echo "the live stations hung up; waiting for their StationOffline pages (up to ${PAGE_WAIT_S:-240} s)..."
    before=$(wc -l <"$pages")
    waited=0
    until tail -n +$((before + 1)) "$pages" | grep -q '"alertname":"StationOffline"' \
        || [ "$waited" -ge "${PAGE_WAIT_S:-240}" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    sleep 2  # the other groups of the same flush
    echo "notifications at the receiver ($pages; status, severity, alertname, station, summary):"
    $py scripts/receiver.py show "$pages"
    if tail -n +$((before + 1)) "$pages" | grep -q '"alertname":"StationOffline"'; then
        echo "StationOffline paged ${waited} s after the live stations hung up"
    elif grep -q '"alertname":"StationOffline"' "$pages"; then
        echo "StationOffline paged when serve started (offline since the previous run on $data)"
    else
        echo "no StationOffline page reached the receiver in ${PAGE_WAIT_S:-240} s" >&2
        exit 1
    fi
fi

kill -TERM "$serve_pid"; wait "$serve_pid" || true
serve_pid=""
$cw alertmanager stop
am_started=""
if [ -n "$receiver_pid" ]; then
    kill -TERM "$receiver_pid"; wait "$receiver_pid" || true
    receiver_pid=""
fi
trap - EXIT
echo "Service, Alertmanager and receiver stopped. InfluxDB keeps running; stop it with: $cw influxd stop"
