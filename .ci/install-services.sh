#!/usr/bin/env bash
# Installs what the tests need on a Debian machine with no Docker engine:
# libmongocrypt (for the mongodb-client-encryption addon), poppler-utils,
# redis-tools, a FerretDB server (MongoDB wire protocol), stripe-mock and local-kms
# (an AWS KMS API server, for the master-key rotation tests).
# Idempotent: a second run only checks.
set -euo pipefail
# Progress goes to stderr so callers can capture stdout.
exec 1>&2

FERRETDB_VERSION=v1.24.2
STRIPE_MOCK_VERSION=v0.203.0
LOCAL_KMS_VERSION=v0.0.0-20260228092603-2a5e92d09ab6
BIN_DIR="${SERVICES_BIN_DIR:-$HOME/.cache/hipaa-billing/bin}"
mkdir -p "$BIN_DIR"

need_apt=()
for pkg in libmongocrypt-dev poppler-utils redis-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing apt packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$BIN_DIR/stripe-mock" ]; then
  echo "building stripe-mock $STRIPE_MOCK_VERSION"
  GOBIN="$BIN_DIR" go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION"
fi

if [ ! -x "$BIN_DIR/ferretdb" ]; then
  # FerretDB's version package panics unless build/version/version.txt holds
  # the release name; the module archive does not carry it, so build from a
  # writable copy of the module source with that one file added.
  echo "building ferretdb $FERRETDB_VERSION (first build takes minutes)"
  src_dir=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  work=$(mktemp -d)
  cp -r "$src_dir/." "$work/"
  chmod -R u+w "$work"
  echo "$FERRETDB_VERSION" > "$work/build/version/version.txt"
  (cd "$work" && go build -trimpath -o "$BIN_DIR/ferretdb" ./cmd/ferretdb)
  rm -rf "$work"
fi
# Stamped with its version: a new LOCAL_KMS_VERSION rebuilds it, the same one is skipped.
if [ ! -x "$BIN_DIR/local-kms" ] || [ "$(cat "$BIN_DIR/local-kms.version" 2>/dev/null)" != "$LOCAL_KMS_VERSION" ]; then
  echo "building local-kms $LOCAL_KMS_VERSION"
  GOBIN="$BIN_DIR" go install "github.com/nsmithuk/local-kms@$LOCAL_KMS_VERSION"
  echo "$LOCAL_KMS_VERSION" > "$BIN_DIR/local-kms.version"
fi
echo "services installed in $BIN_DIR"
