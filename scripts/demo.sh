#!/usr/bin/env bash
# The service's main job on a simulated fleet:
#   1. install what is missing and start InfluxDB on loopback (Debian's influxdb, no systemd,
#      data in ./var);
#   2. simulate yesterday's fleet with its ground-truth labels, ingest it, run the detectors over
#      it and score them against the labels;
#   3. start `chargewatch serve` and drive a live fleet into it over OCPP (1.6 and 2.0.1 mixed),
#      then stop the service cleanly.
# STATIONS=200 SEED=7 LIVE_STATIONS=20 PORT=8000 scripts/demo.sh to change the fleets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export CHARGEWATCH_DATA_DIR="${CHARGEWATCH_DATA_DIR:-$PWD/var}"
mkdir -p "$CHARGEWATCH_DATA_DIR"
cw=.venv/bin/chargewatch
data="$CHARGEWATCH_DATA_DIR"
port="${PORT:-8000}"

$cw influxd start
$cw simulate --stations "${STATIONS:-100}" --hours 24 --seed "${SEED:-1}" \
    --start "$(date -u -d yesterday +%Y-%m-%dT00:00:00Z)" \
    --out "$data/fleet.jsonl" --labels "$data/labels.jsonl"
$cw ingest "$data/fleet.jsonl"
$cw detect --input "$data/fleet.jsonl" --output "$data/flags.jsonl"
$cw evaluate --flags "$data/flags.jsonl" --labels "$data/labels.jsonl" --events "$data/fleet.jsonl"

echo "starting chargewatch serve on 127.0.0.1:$port"
$cw serve --port "$port" &
serve_pid=$!
trap 'kill -TERM $serve_pid 2>/dev/null || true' EXIT
health() { .venv/bin/python -c "import httpx, sys; print(httpx.get(sys.argv[1]).raise_for_status().text)" "http://127.0.0.1:$port/healthz"; }
for _ in $(seq 100); do
    health >/dev/null 2>&1 && break
    sleep 0.2
done
$cw simulate --stations "${LIVE_STATIONS:-10}" --hours 2 --seed "${SEED:-1}" \
    --start "$(date -u -d '2 hours ago' +%Y-%m-%dT%H:00:00Z)" \
    --out "$data/live.jsonl" --labels "$data/live-labels.jsonl" \
    --live "ws://127.0.0.1:$port/ocpp" --speed 600
health
kill -TERM "$serve_pid"; wait "$serve_pid" || true
trap - EXIT
echo "Service stopped. InfluxDB keeps running; stop it with: $cw influxd stop"
