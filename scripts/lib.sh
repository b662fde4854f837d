# shellcheck shell=bash
# What `npm run dev`, `npm test`, `npm run bench` and `.ci/run` share: check the machine, install what is missing
# (Debian packages, the Go-built services, node_modules, the build), start the services that do not answer yet, and
# stop exactly those again. Sourced, never run.
#
# Settings (all optional): SERVICES_BIN_DIR (~/.cache/hipaa-billing/bin), SERVICES_RUN_DIR (/tmp/hipaa-billing-services),
# REDIS_PORT (6379), FERRETDB_PORT (27017), STRIPE_MOCK_PORT (12111), FERRETDB_POSTGRESQL_URL (the PostgreSQL FerretDB
# stores into; default: the machine's on 127.0.0.1:POSTGRESQL_PORT (5432), else a cluster of our own on
# OWN_POSTGRESQL_PORT (54329) with its data in SERVICES_RUN_DIR),
# FERRETDB_PG_DATABASE (hipaa_billing_ferretdb), FERRETDB_PG_POOL_MAX_CONNS (40: the PostgreSQL connections one FerretDB
# may hold).

FERRETDB_VERSION=v1.24.2
STRIPE_MOCK_VERSION=v0.203.0
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
HELM_VERSION=v4.3.2
NODE_MIN=20.19

HB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR="${SERVICES_BIN_DIR:-$HOME/.cache/hipaa-billing/bin}"
RUN_DIR="${SERVICES_RUN_DIR:-/tmp/hipaa-billing-services}"
REDIS_PORT="${REDIS_PORT:-6379}"
FERRETDB_PORT="${FERRETDB_PORT:-27017}"
STRIPE_MOCK_PORT="${STRIPE_MOCK_PORT:-12111}"
POSTGRESQL_PORT="${POSTGRESQL_PORT:-5432}"
OWN_POSTGRESQL_PORT="${OWN_POSTGRESQL_PORT:-54329}"
FERRETDB_PG_DATABASE="${FERRETDB_PG_DATABASE:-hipaa_billing_ferretdb}"
FERRETDB_PG_POOL_MAX_CONNS="${FERRETDB_PG_POOL_MAX_CONNS:-40}"

# Everything this run started, stopped again by stop_started_services (last started, first stopped).
STARTED=()

die() {
  printf 'hipaa-billing: %s\n' "$*" >&2
  exit 1
}
say() { printf '==> %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# "redis-server (pid 123)" for whatever listens on the port, or "an unknown process".
port_owner() {
  local owner
  owner=$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -n1)
  echo "${owner:-an unknown process}"
}
wait_port() {
  local port=$1 what=$2
  for _ in $(seq 1 150); do port_open "$port" && return 0; sleep 0.2; done
  die "$what did not start on port $port; see $RUN_DIR/$what.log"
}
# Refuses to go on when a port we are about to listen on is taken: the line names who holds it.
require_free_port() {
  local port=$1 what=$2 setting=$3
  port_open "$port" || return 0
  die "port $port (for $what) is taken by $(port_owner "$port"), which is not ours; stop it or set $setting to another port"
}

check_node() {
  command -v node >/dev/null || die "Node.js $NODE_MIN or newer 20.x is needed and none is on PATH (Debian: apt-get install nodejs, or NodeSource)"
  local version
  version=$(node -p 'process.versions.node')
  node -e "const [a,b]=process.argv[1].split('.').map(Number),[x,y]=process.argv[2].split('.').map(Number);process.exit(a>x||(a===x&&b>=y)?0:1)" \
    "$version" "$NODE_MIN" || die "Node.js $version is too old: $NODE_MIN or newer 20.x is needed"
}

# Runs a command as root: directly, with password-less sudo, or not at all (with one line saying what to run).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    die "this needs root, and $(id -un) is neither root nor allowed password-less sudo: run once as root: $*"
  fi
}

ensure_apt_packages() {
  # chromium: the dashboard's real-browser test (test/e2e/dashboard-browser.test.ts, driven by playwright-core).
  local wanted=(libmongocrypt-dev poppler-utils redis-tools g++ make python3 pkg-config chromium)
  command -v redis-server >/dev/null || port_open "$REDIS_PORT" || wanted+=(redis-server)
  if [ -z "${FERRETDB_POSTGRESQL_URL:-}" ] && ! system_postgresql_answers && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    wanted+=(postgresql)
  fi
  local missing=()
  for pkg in "${wanted[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "Debian packages ${missing[*]} are needed and this machine has no apt-get"
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds the Go-written services and tools into BIN_DIR once: ensure_go_services ferretdb stripe-mock [local-kms] [helm].
ensure_go_services() {
  local missing=()
  for name in "$@"; do [ -x "$BIN_DIR/$name" ] && [ "$(cat "$BIN_DIR/$name.version" 2>/dev/null)" = "$(go_service_version "$name")" ] || missing+=("$name"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v go >/dev/null || die "Go 1.24 or newer is needed once, to build ${missing[*]} into $BIN_DIR, and none is on PATH (install it from https://go.dev/dl; Debian 12's golang-go is 1.19, too old)"
  go_version_at_least 1.24 || die "Go 1.24 or newer is needed to build ${missing[*]}; found $(go env GOVERSION)"
  mkdir -p "$BIN_DIR"
  for name in "${missing[@]}"; do
    say "building $name $(go_service_version "$name") into $BIN_DIR (once; FerretDB takes a few minutes)"
    case "$name" in
      ferretdb) build_ferretdb ;;
      stripe-mock) GOBIN="$BIN_DIR" go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION" ;;
      local-kms) GOBIN="$BIN_DIR" go install "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION" ;;
      helm) GOBIN="$BIN_DIR" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" ;;
    esac >&2
    go_service_version "$name" >"$BIN_DIR/$name.version"
  done
}
go_service_version() {
  case "$1" in
    ferretdb) echo "$FERRETDB_VERSION" ;;
    stripe-mock) echo "$STRIPE_MOCK_VERSION" ;;
    local-kms) echo "$LOCAL_KMS_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
  esac
}
go_version_at_least() {
  local have
  have=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n%s\n' "$1" "$have" | sort -V | head -n1)" = "$1" ]
}
# FerretDB's version package panics unless build/version/version.txt holds the release name; the module archive does
# not carry it, so it is built from a writable copy of the module source with that one file added.
build_ferretdb() {
  local src work
  src=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  work=$(mktemp -d)
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" >"$work/build/version/version.txt"
  (cd "$work" && go build -trimpath -o "$BIN_DIR/ferretdb" ./cmd/ferretdb)
  rm -rf "$work"
}

# npm ci when node_modules is missing or was installed from another package-lock.json or Node.js. The field-encryption
# addon (mongodb-client-encryption 6.0.0) is compiled against Debian's libmongocrypt 1.7.2: BUILD_TYPE=dynamic links
# it, CXXFLAGS=-fpermissive lets that old addon compile, and nodedir keeps node-gyp from downloading Node's headers.
ensure_node_modules() {
  local stamp="$HB_ROOT/node_modules/.hipaa-billing-installed" want
  # The lockfile and the dependency patches npm ci applies (patch-package, package.json's postinstall).
  want="$(cat "$HB_ROOT/package-lock.json" "$HB_ROOT"/patches/*.patch | sha256sum | cut -d' ' -f1) node $(node -p 'process.versions.node')"
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  local node_prefix
  node_prefix=$(dirname "$(dirname "$(command -v node)")")
  if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node_api.h" ]; then
    export npm_config_nodedir="$node_prefix"
  fi
  say "npm ci (compiles the field-encryption addon against Debian's libmongocrypt)"
  (cd "$HB_ROOT" && BUILD_TYPE=dynamic CXXFLAGS=-fpermissive npm ci --no-audit --no-fund --loglevel=error) >&2
  (cd "$HB_ROOT" && node -e "require('mongodb-client-encryption')") ||
    die "the field-encryption addon did not load after npm ci; see the compiler output above"
  echo "$want" >"$stamp"
}

ensure_build() {
  say "building (tsc, incremental)"
  (cd "$HB_ROOT" && npx tsc -p tsconfig.build.json) >&2
}

# ---- services ----

system_postgresql_answers() {
  command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$POSTGRESQL_PORT" 2>/dev/null
}

# Sets POSTGRESQL_URL (server, no database): the configured one, the machine's, or a cluster of our own.
start_postgresql() {
  if [ -n "${FERRETDB_POSTGRESQL_URL:-}" ]; then
    POSTGRESQL_URL=${FERRETDB_POSTGRESQL_URL%/*}
    return 0
  fi
  if system_postgresql_answers; then
    local refusal
    # psql's own first line says why (a password is wanted, "too many clients", ...): guessing misled people.
    if ! refusal=$(psql -h 127.0.0.1 -p "$POSTGRESQL_PORT" -U postgres -d postgres -Atqc 'select 1' 2>&1 >/dev/null); then
      refusal=$(printf '%s' "$refusal" | head -n1)
      case "$refusal" in
        *password*) die "the PostgreSQL on 127.0.0.1:$POSTGRESQL_PORT refused us: $refusal; set FERRETDB_POSTGRESQL_URL=postgres://USER:PASSWORD@127.0.0.1:$POSTGRESQL_PORT/$FERRETDB_PG_DATABASE" ;;
        *) die "the PostgreSQL on 127.0.0.1:$POSTGRESQL_PORT refused us: ${refusal:-psql failed without a message}" ;;
      esac
    fi
    POSTGRESQL_URL=postgres://postgres@127.0.0.1:$POSTGRESQL_PORT
    return 0
  fi
  local bin data="$RUN_DIR/postgresql" run_as=()
  bin=$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n1)")
  [ -x "$bin/initdb" ] || die "no PostgreSQL answers on 127.0.0.1:$POSTGRESQL_PORT and Debian's postgresql package is not installed"
  # PostgreSQL refuses to run as root: root runs it as the postgres user the package created.
  [ "$(id -u)" -eq 0 ] && run_as=(runuser -u postgres --)
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$data"
    chmod a+x "$RUN_DIR" # the postgres user must reach its data directory inside the run directory
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >"$RUN_DIR/postgresql-init.log" 2>&1 ||
      die "initdb failed; see $RUN_DIR/postgresql-init.log"
  fi
  if ! port_open "$OWN_POSTGRESQL_PORT"; then
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -o "-p $OWN_POSTGRESQL_PORT -k $data -c listen_addresses=127.0.0.1" start >/dev/null ||
      die "PostgreSQL did not start; see $data/server.log"
    STARTED+=("postgresql:${run_as[*]} $bin/pg_ctl -D $data -m fast -w stop")
  fi
  POSTGRESQL_URL=postgres://postgres@127.0.0.1:$OWN_POSTGRESQL_PORT
}

ensure_pg_database() {
  local server=$1 name=$2
  psql "$server/postgres" -Atqc "select 1 from pg_database where datname = '$name'" | grep -q 1 ||
    psql "$server/postgres" -qc "create database \"$name\"" >/dev/null
}

# Starts a service in the background unless its port answers; an answering port must be the service we expect.
start_redis() {
  if port_open "$REDIS_PORT"; then
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] ||
      die "port $REDIS_PORT is taken by $(port_owner "$REDIS_PORT"), which is not Redis; stop it or set REDIS_PORT"
    return 0
  fi
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --maxmemory-policy noeviction --dir "$RUN_DIR" --logfile "$RUN_DIR/redis.log" --pidfile "$RUN_DIR/redis.pid"
  wait_port "$REDIS_PORT" redis
  STARTED+=("redis:redis-cli -p $REDIS_PORT shutdown nosave")
}

start_ferretdb() {
  if port_open "$FERRETDB_PORT"; then
    node "$HB_ROOT/scripts/probe.cjs" mongodb "mongodb://127.0.0.1:$FERRETDB_PORT" ||
      die "port $FERRETDB_PORT is taken by $(port_owner "$FERRETDB_PORT"), which does not speak the MongoDB protocol; stop it or set FERRETDB_PORT"
    return 0
  fi
  start_postgresql
  ensure_pg_database "$POSTGRESQL_URL" "$FERRETDB_PG_DATABASE"
  mkdir -p "$RUN_DIR/ferretdb-state"
  # A bounded pool (FerretDB's own default is 50 connections): dev, tests and CI share one PostgreSQL (100 by default).
  # Not much smaller: FerretDB 1.24 deadlocks when every pooled connection is held by a query waiting for its metadata
  # registry's read lock while a create or drop of a database or collection holds the write lock and waits for a
  # connection (seen twice on 2026-12-06 with 20, under benches and tests creating and dropping databases at once).
  nohup "$BIN_DIR/ferretdb" --handler=postgresql \
    --postgresql-url="$POSTGRESQL_URL/$FERRETDB_PG_DATABASE?pool_max_conns=$FERRETDB_PG_POOL_MAX_CONNS" \
    --listen-addr="127.0.0.1:$FERRETDB_PORT" --debug-addr=- --state-dir="$RUN_DIR/ferretdb-state" \
    --telemetry=disable --log-level=warn >"$RUN_DIR/ferretdb.log" 2>&1 &
  STARTED+=("ferretdb:kill $!")
  wait_port "$FERRETDB_PORT" ferretdb
}

start_stripe_mock() {
  if port_open "$STRIPE_MOCK_PORT"; then
    node "$HB_ROOT/scripts/probe.cjs" stripe "http://127.0.0.1:$STRIPE_MOCK_PORT" ||
      die "port $STRIPE_MOCK_PORT is taken by $(port_owner "$STRIPE_MOCK_PORT"), which is not stripe-mock; stop it or set STRIPE_MOCK_PORT"
    return 0
  fi
  # Its HTTPS listener (unused here) on a port the kernel picks: a fixed one could be any client socket's.
  nohup "$BIN_DIR/stripe-mock" -http-addr "127.0.0.1:$STRIPE_MOCK_PORT" -https-addr 127.0.0.1:0 \
    >"$RUN_DIR/stripe-mock.log" 2>&1 &
  STARTED+=("stripe-mock:kill $!")
  wait_port "$STRIPE_MOCK_PORT" stripe-mock
}

# Starts Redis, FerretDB (on PostgreSQL) and stripe-mock where they do not answer, and exports their addresses.
start_services() {
  mkdir -p "$RUN_DIR"
  start_redis
  start_ferretdb
  start_stripe_mock
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  export MONGODB_URI="mongodb://127.0.0.1:$FERRETDB_PORT/hipaa_billing"
  export STRIPE_MOCK_URL="http://127.0.0.1:$STRIPE_MOCK_PORT"
  local names=()
  for entry in "${STARTED[@]}"; do names+=("${entry%%:*}"); done
  say "services: Redis :$REDIS_PORT, FerretDB :$FERRETDB_PORT, stripe-mock :$STRIPE_MOCK_PORT (started now: ${names[*]:-none})"
}

stop_started_services() {
  local i entry command pid
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    entry=${STARTED[i]}
    command=${entry#*:}
    eval "$command" >/dev/null 2>&1 || true
    # A signalled process: wait (up to 10 s) until it is gone, so its port is free when we return.
    if [[ $command == kill\ * ]]; then
      pid=${command#kill }
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  STARTED=()
}

# Everything a run needs before its own command: machine checks, packages, services built, node_modules, build.
# The Go builds (minutes, the first time) run while npm installs and tsc builds.
prepare() {
  check_node
  ensure_apt_packages
  ensure_go_services "$@" &
  local go_builds=$!
  ensure_node_modules
  ensure_build
  wait "$go_builds" || die "building ${*:-the Go services} into $BIN_DIR failed; see the lines above"
}
