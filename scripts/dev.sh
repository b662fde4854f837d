#!/usr/bin/env bash
# `npm run dev`: the whole system on this machine from a fresh clone. Installs what is missing (lib.sh), starts Redis,
# FerretDB on PostgreSQL and stripe-mock where they do not answer, then runs devtools/dev.ts in the foreground
# (stripe-sim, the demo company, api + workers with readable logs, what to try next). Ctrl-C stops everything this
# run started, and nothing else.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$HB_ROOT"

API_PORT="${PORT:-3000}"
STRIPE_SIM_PORT="${STRIPE_SIM_PORT:-12113}"
prepare ferretdb stripe-mock
require_free_port "$API_PORT" "the api" PORT
require_free_port "$STRIPE_SIM_PORT" stripe-sim STRIPE_SIM_PORT
trap stop_started_services EXIT
start_services
export STRIPE_API_BASE="http://127.0.0.1:$STRIPE_SIM_PORT"

node dist/devtools/dev.js &
dev_pid=$!
# Ctrl-C reaches every process of the terminal's group; a plain `kill -INT` of this script reaches only this shell.
trap 'kill -INT "$dev_pid" 2>/dev/null || true' INT TERM
# A trapped signal interrupts `wait`: wait again until the dev process has stopped what it started, then take its status.
while kill -0 "$dev_pid" 2>/dev/null; do wait "$dev_pid" || true; done
wait "$dev_pid"
