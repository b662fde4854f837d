#!/usr/bin/env bash
# `npm run chaos [-- --seed S --minutes M --short --json --workers N]`: the fault suite (docs/chaos.md). Installs and
# starts what is missing like `npm test` (FerretDB, stripe-mock; the suite starts a Redis of its own), builds, runs
# it; services this run started are stopped at the end. The environment's addresses win, as in the tests.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$HB_ROOT"

command -v redis-server >/dev/null || die "redis-server is not installed: the chaos suite starts a Redis of its own"
if [ -n "${MONGODB_URI:-}${STRIPE_API_BASE:-}" ]; then
  prepare
else
  prepare ferretdb stripe-mock
  trap stop_started_services EXIT
  start_services >&2
  export STRIPE_API_BASE="$STRIPE_MOCK_URL"
fi
node dist/chaos/main.js "$@"
