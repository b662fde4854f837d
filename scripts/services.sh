#!/usr/bin/env bash
# `npm run -s services:start`: installs what is missing, starts Redis, FerretDB on PostgreSQL and stripe-mock where they
# do not answer, leaves them running, and prints their addresses for `eval "$(npm run -s services:start)"`.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$HB_ROOT"
prepare ferretdb stripe-mock local-kms
start_services
echo "export REDIS_URL=$REDIS_URL"
echo "export MONGODB_URI=$MONGODB_URI"
echo "export STRIPE_API_BASE=$STRIPE_MOCK_URL"
