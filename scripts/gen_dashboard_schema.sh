#!/usr/bin/env bash
# Generate grafana_dashboards/schema/dashboard.schema.json: the JSON schema of
# the `Dashboard` type of npm @grafana/schema (the generated "dashboard x"
# kind, raw/dashboard/x/types.gen.d.ts), made by ts-json-schema-generator.
#
# Versions are pinned in grafana_dashboards/schema/package.json and
# package-lock.json; `npm ci` runs in a temporary directory, so no
# node_modules ever lands in the repository.  Needs node and npm (the
# generator asks for node >= 22 but runs on Debian's node 20).
#
#   bash scripts/gen_dashboard_schema.sh           # rewrite the schema
#   bash scripts/gen_dashboard_schema.sh --check   # exit 1 if it is stale
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
schema_dir="$root/grafana_dashboards/schema"
out="$schema_dir/dashboard.schema.json"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$schema_dir/package.json" "$schema_dir/package-lock.json" "$schema_dir/tsconfig.json" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)

# Exactly the command recorded in grafana_dashboards/schema/README.md.
(cd "$work" && ./node_modules/.bin/ts-json-schema-generator \
  --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts \
  --type Dashboard \
  --tsconfig tsconfig.json \
  --out "$work/dashboard.schema.json")

if [ "$check" = 1 ]; then
  if ! cmp -s "$work/dashboard.schema.json" "$out"; then
    echo "stale: $out (run: bash scripts/gen_dashboard_schema.sh)" >&2
    exit 1
  fi
  echo "dashboard schema up to date"
else
  cp "$work/dashboard.schema.json" "$out"
  echo "wrote $out"
fi
