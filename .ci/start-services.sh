#!/usr/bin/env bash
# Starts FerretDB (SQLite backend) and stripe-mock in the background, each on its
# own port and data directory, and waits until both answer. Redis is expected
# to be running already (this machine kind starts one on 127.0.0.1:6379); if it
# is not, a private redis-server is started.
# Prints the environment the tests read, for `eval "$(.ci/start-services.sh)"`.
set -euo pipefail

BIN_DIR="${SERVICES_BIN_DIR:-$HOME/.cache/hipaa-billing/bin}"
RUN_DIR="${SERVICES_RUN_DIR:-/tmp/hipaa-billing-services}"
MONGO_PORT="${FERRETDB_PORT:-27017}"
STRIPE_PORT="${STRIPE_MOCK_PORT:-12111}"
REDIS_PORT="${REDIS_PORT:-6379}"
mkdir -p "$RUN_DIR/ferretdb-data" "$RUN_DIR/ferretdb-state"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
  echo "$2 did not start on port $1; see $RUN_DIR/$2.log" >&2
  return 1
}

if ! port_open "$MONGO_PORT"; then
  nohup "$BIN_DIR/ferretdb" --handler=sqlite --sqlite-url="file:$RUN_DIR/ferretdb-data/" \
    --listen-addr="127.0.0.1:$MONGO_PORT" --debug-addr=- --state-dir="$RUN_DIR/ferretdb-state" \
    --telemetry=disable --log-level=warn >"$RUN_DIR/ferretdb.log" 2>&1 &
  wait_port "$MONGO_PORT" ferretdb
fi
if ! port_open "$STRIPE_PORT"; then
  nohup "$BIN_DIR/stripe-mock" -http-addr "127.0.0.1:$STRIPE_PORT" -https-addr "127.0.0.1:$((STRIPE_PORT + 1))" >"$RUN_DIR/stripe-mock.log" 2>&1 &
  wait_port "$STRIPE_PORT" stripe-mock
fi
if ! port_open "$REDIS_PORT"; then
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$RUN_DIR" --logfile "$RUN_DIR/redis.log"
  wait_port "$REDIS_PORT" redis
fi

echo "export REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
echo "export MONGODB_URI=mongodb://127.0.0.1:$MONGO_PORT/hipaa_billing"
echo "export STRIPE_API_BASE=http://127.0.0.1:$STRIPE_PORT"
