#!/usr/bin/env bash
# `bash scripts/redis-cluster.sh start|stop|status`: a local Redis Cluster of three masters and three replicas for the
# cluster pass of the tests (jest project `redis-cluster`, docs/testing.md) and for trying the product on a cluster.
#
#   start   starts six `redis-server --cluster-enabled yes` on REDIS_CLUSTER_PORT..+5 (7100-7105), joins them with
#           `redis-cli --cluster create --cluster-replicas 1`, waits until every node says cluster_state:ok and every
#           replica is in sync, and prints `export REDIS_CLUSTER_URL=redis+cluster://127.0.0.1:7100,...` (eval it).
#   start-node PORT   starts one node again (after a failover test killed it): it rejoins from its nodes.conf, as a
#           replica of whoever took its slots, and the command waits until it is in sync.
#   stop    shuts down the nodes started from REDIS_CLUSTER_DIR and removes that directory.
#   status  `cluster nodes` as the first node sees them.
#
# Settings: REDIS_CLUSTER_PORT (7100), REDIS_CLUSTER_DIR (SERVICES_RUN_DIR/redis-cluster-PORT), REDIS_CLUSTER_NODE_TIMEOUT
# (ms a master may be silent before its replica takes over: 2000, short so failover tests are quick). Nothing is
# persisted (no AOF, no RDB): the nodes hold test data only. maxmemory-policy noeviction, as production must.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

BASE_PORT="${REDIS_CLUSTER_PORT:-7100}"
NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT:-2000}"
CLUSTER_DIR="${REDIS_CLUSTER_DIR:-$RUN_DIR/redis-cluster-$BASE_PORT}"
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE_PORT + i))); done

# Debian's redis-tools ships the server binary as redis-check-rdb; the redis-server package only adds a symlink (and a
# system service we do not want). The binary picks its mode from its name, so a symlink of our own does the same.
redis_server_bin() {
  if command -v redis-server >/dev/null; then
    command -v redis-server
  elif command -v redis-check-rdb >/dev/null; then
    mkdir -p "$BIN_DIR"
    ln -sf "$(command -v redis-check-rdb)" "$BIN_DIR/redis-server"
    echo "$BIN_DIR/redis-server"
  else
    die "redis-server is needed for the local Redis Cluster (Debian: apt-get install redis-tools)"
  fi
}

cluster_ok_everywhere() {
  local port
  for port in "${PORTS[@]}"; do
    redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    # Every node must know all six, or a client could be sent to a node that does not yet know a slot's owner.
    [ "$(redis-cli -p "$port" cluster nodes 2>/dev/null | grep -cv 'fail\|handshake\|noaddr')" -eq 6 ] || return 1
  done
}

replicas_in_sync() {
  local port
  for port in "${PORTS[@]}"; do
    if redis-cli -p "$port" info replication 2>/dev/null | grep -q '^role:slave'; then
      redis-cli -p "$port" info replication | grep -q '^master_link_status:up' || return 1
    fi
  done
}

start_node() {
  local server=$1 port=$2
  mkdir -p "$CLUSTER_DIR/$port"
  "$server" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$CLUSTER_DIR/$port" \
    --logfile "$CLUSTER_DIR/$port/redis.log" --pidfile "$CLUSTER_DIR/$port/redis.pid" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$NODE_TIMEOUT" \
    --save "" --appendonly no --maxmemory-policy noeviction
}

wait_settled() {
  for _ in $(seq 1 300); do
    cluster_ok_everywhere && replicas_in_sync && return 0
    sleep 0.1
  done
  die "the Redis Cluster on ports ${PORTS[0]}-${PORTS[5]} did not settle; see $CLUSTER_DIR"
}

restart_node() {
  local port=$1
  [[ " ${PORTS[*]} " == *" $port "* ]] || die "port $port is not a node of the cluster on ${PORTS[0]}-${PORTS[5]}"
  [ -f "$CLUSTER_DIR/$port/nodes.conf" ] || die "no node of ours was on port $port (no $CLUSTER_DIR/$port/nodes.conf)"
  require_free_port "$port" "the local Redis Cluster" REDIS_CLUSTER_PORT
  start_node "$(redis_server_bin)" "$port"
  wait_settled
}

start() {
  local server port
  server=$(redis_server_bin)
  command -v redis-cli >/dev/null || die "redis-cli is needed (Debian: apt-get install redis-tools)"
  for port in "${PORTS[@]}"; do require_free_port "$port" "the local Redis Cluster" REDIS_CLUSTER_PORT; done
  mkdir -p "$CLUSTER_DIR"
  for port in "${PORTS[@]}"; do start_node "$server" "$port"; done
  for port in "${PORTS[@]}"; do
    for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
    port_open "$port" || die "Redis cluster node on port $port did not start; see $CLUSTER_DIR/$port/redis.log"
  done
  local nodes=()
  for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 ||
    die "redis-cli --cluster create failed; see $CLUSTER_DIR/create.log"
  wait_settled
  local seeds
  seeds=$(
    IFS=,
    echo "${nodes[*]}"
  )
  echo "export REDIS_CLUSTER_URL=redis+cluster://$seeds"
}

stop() {
  local port pid
  for port in "${PORTS[@]}"; do
    pid=$(cat "$CLUSTER_DIR/$port/redis.pid" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$CLUSTER_DIR"
}

case "${1:-}" in
  start) start ;;
  start-node) restart_node "${2:?start-node needs the port}" ;;
  stop) stop ;;
  status) redis-cli -p "${PORTS[0]}" cluster nodes ;;
  *) die "usage: scripts/redis-cluster.sh start|start-node PORT|stop|status" ;;
esac
