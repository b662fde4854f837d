#!/usr/bin/env bash
# `npm run bench [-- --json] [-- NAME ...]`: installs and starts what is missing like `npm test`, then runs the
# benchmarks; services this run started are stopped at the end. The environment's addresses win, as in the tests.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$HB_ROOT"

if [ -n "${REDIS_URL:-}${MONGODB_URI:-}${STRIPE_API_BASE:-}" ]; then
  prepare
else
  prepare ferretdb stripe-mock
  trap stop_started_services EXIT
  start_services >&2
  export STRIPE_API_BASE="$STRIPE_MOCK_URL"
fi
node dist/bench/main.js "$@"
