#!/usr/bin/env bash
# The one command that runs the tests on a machine without Docker: installs
# FerretDB and stripe-mock if needed, starts them, then runs `npm test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/install-services.sh
eval "$(bash .ci/start-services.sh)"
npm test -- "$@"
