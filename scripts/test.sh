#!/usr/bin/env bash
# `npm test [-- JEST ARGS]`: the whole suite on a fresh clone. Installs what is missing (see lib.sh), builds, then runs
# jest against
#   1. the services in REDIS_URL, MONGODB_URI and STRIPE_API_BASE when they are set (they win);
#   2. else containers started by testcontainers when a Docker engine runs;
#   3. else Redis, FerretDB on PostgreSQL and stripe-mock on this machine, started here when they do not answer
#      and stopped again at the end (only those this run started).
# FerretDB, local-kms and Helm binaries are always built: the outage test runs a FerretDB of its own, the key-rotation
# tests a local AWS KMS, the chart test Helm.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$HB_ROOT"

if [ -n "${REDIS_URL:-}${MONGODB_URI:-}${STRIPE_API_BASE:-}" ]; then
  prepare ferretdb local-kms helm
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  prepare ferretdb local-kms helm
else
  prepare ferretdb stripe-mock local-kms helm
  trap stop_started_services EXIT
  start_services
  export STRIPE_API_BASE="$STRIPE_MOCK_URL"
fi
npx jest --runInBand "$@"
