#!/usr/bin/env bash
# The service's main job on a simulated fleet: install what is missing, start InfluxDB on
# loopback (Debian's influxdb, no systemd, data in ./var), simulate yesterday's fleet with its
# ground-truth labels, and ingest it.  STATIONS=200 SEED=7 scripts/demo.sh to change the fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

export CHARGEWATCH_DATA_DIR="${CHARGEWATCH_DATA_DIR:-$PWD/var}"
mkdir -p "$CHARGEWATCH_DATA_DIR"
cw=.venv/bin/chargewatch
events="$CHARGEWATCH_DATA_DIR/fleet.jsonl"
labels="$CHARGEWATCH_DATA_DIR/labels.jsonl"

$cw influxd start
$cw simulate --stations "${STATIONS:-100}" --hours 24 --seed "${SEED:-1}" \
    --start "$(date -u -d yesterday +%Y-%m-%dT00:00:00Z)" --out "$events" --labels "$labels"
$cw ingest "$events"
echo "Stop InfluxDB with: $cw influxd stop"
