#!/usr/bin/env bash
# `npm run chaos [-- --seed S --minutes M --short --json --workers N]`: the fault suite (docs/chaos.md). Installs what
# is missing like `npm test` (the FerretDB binary, stripe-mock) and builds; the suite itself starts a Redis and a
# FerretDB (on PostgreSQL) of its own, which it kills and restarts. stripe-mock: STRIPE_API_BASE when set, else started
# here (and stopped at the end) like `npm test` does.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$HB_ROOT"

command -v redis-server >/dev/null || die "redis-server is not installed: the chaos suite starts a Redis of its own"
if [ -n "${STRIPE_API_BASE:-}" ]; then
  prepare ferretdb
  [ -n "${FERRETDB_POSTGRESQL_URL:-}" ] || system_postgresql_answers ||
    die "no PostgreSQL answers on 127.0.0.1:$POSTGRESQL_PORT for the suite's own FerretDB; set FERRETDB_POSTGRESQL_URL"
else
  prepare ferretdb stripe-mock
  trap stop_started_services EXIT
  start_services >&2
  export STRIPE_API_BASE="$STRIPE_MOCK_URL"
  # The PostgreSQL start_services found or started: the suite's own FerretDB stores there too.
  export FERRETDB_POSTGRESQL_URL="${FERRETDB_POSTGRESQL_URL:-$POSTGRESQL_URL/postgres}"
fi
export FERRETDB_BIN="$BIN_DIR/ferretdb"
node dist/chaos/main.js "$@"
