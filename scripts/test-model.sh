#!/usr/bin/env bash
# `npm run test:model [-- --runs N] [--seed S] [--path P] [--batch B] [--no-shrink] [JEST ARGS]`: the model-based
# billing property (issue 19) alone, against the services in REDIS_URL, MONGODB_URI and STRIPE_API_BASE (or those
# global setup starts). --runs N histories (default 100), run B at a time (default 10); --seed/--path replay a failure
# as fast-check printed it.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) export MODEL_HISTORIES="$2"; shift 2 ;;
    --seed) export MODEL_SEED="$2"; shift 2 ;;
    --path) export MODEL_PATH="$2"; shift 2 ;;
    --batch) export MODEL_BATCH="$2"; shift 2 ;;
    --no-shrink) export MODEL_NO_SHRINK=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
# The workers render documents in a worker thread built into dist/.
[ -f dist/documents/render-worker.js ] || npx tsc -p tsconfig.build.json
exec npx jest --runInBand test/model/billing.property.test.ts ${args[@]+"${args[@]}"}
