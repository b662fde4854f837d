#!/usr/bin/env bash
# `npm run dev`: the whole system on this machine from a fresh clone. Installs what is missing (lib.sh), starts Redis,
# FerretDB on PostgreSQL and stripe-mock where they do not answer, then runs devtools/dev.ts in the foreground
# (stripe-sim, the demo company, api + workers with readable logs, what to try next). Ctrl-C stops everything this
# run started, and nothing else.
#
# The development data lives in PostgreSQL (through FerretDB) and outlives the checkout; the master key that wraps its
# data keys is the checkout's (.secrets/). So each checkout gets databases of its own, named from a hash of its path,
# and devtools/dev-data.ts stops with one line when the data was written under another key.
# `npm run dev -- --reset` drops this checkout's development data (databases, queues) and starts over; the key stays.
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
checkout_id=$(printf '%s' "$HB_ROOT" | sha256sum | cut -c1-12)
export MONGODB_URI="mongodb://127.0.0.1:$FERRETDB_PORT/hipaa_billing_dev_$checkout_id"
export KEY_VAULT_NAMESPACE="${KEY_VAULT_NAMESPACE:-hipaa_billing_dev_${checkout_id}_keys.__keyVault}"
export QUEUE_PREFIX="${QUEUE_PREFIX:-{hbdev-$checkout_id\}}"

node dist/devtools/dev.js "$@" &
dev_pid=$!
# Ctrl-C reaches every process of the terminal's group; a plain `kill -INT` of this script reaches only this shell.
trap 'kill -INT "$dev_pid" 2>/dev/null || true' INT TERM
# A trapped signal interrupts `wait`: wait again until the dev process has stopped what it started, then take its status.
while kill -0 "$dev_pid" 2>/dev/null; do wait "$dev_pid" || true; done
wait "$dev_pid"
