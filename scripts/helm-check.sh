#!/usr/bin/env bash
# `npm run helm:check` (and .ci/run): lints the Helm chart and renders it with its default values and with
# values-production.yaml; values.schema.json is checked on every render. Builds Helm (HELM_VERSION, scripts/lib.sh)
# into SERVICES_BIN_DIR once when it is not there yet.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

chart="$HB_ROOT/deploy/helm/hipaa-billing"
ensure_go_services helm
helm="$BIN_DIR/helm"
# The ServiceMonitor is rendered only where the Prometheus Operator's API exists: render as if it did.
api_versions=(--api-versions monitoring.coreos.com/v1/ServiceMonitor)

for values in "" "$chart/values-production.yaml"; do
  with=()
  label=""
  if [ -n "$values" ]; then
    with=(--values "$values")
    label=$(basename "$values")
  fi
  say "helm lint ${label:-(default values)}"
  "$helm" lint --strict "$chart" "${with[@]}"
  say "helm template ${label:-(default values)}"
  rendered=$("$helm" template hipaa-billing "$chart" --namespace billing "${api_versions[@]}" "${with[@]}")
  printf '%s\n' "$rendered" | sed -n 's/^kind: //p' | sort | uniq -c | sed 's/^/    /' >&2
done
