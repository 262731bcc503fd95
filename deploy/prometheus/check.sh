#!/usr/bin/env bash
# Check the Prometheus rules and the Grafana dashboards' queries:
#   1. `promtool check rules alerts.yml` (syntax, PromQL, annotation templates);
#   2. `promtool test rules alerts_test.yml` (each alert fires on the series it is about);
#   3. every Grafana query, as a recording rule (deploy/grafana/build.py --rules), parsed by
#      `promtool check rules`.
# That every metric they name is exported is tests/deploy/test_metric_names.py (no promtool).
# promtool is Debian's `prometheus` package (apt-get install -y prometheus); without it this
# fails, naming the package, rather than passing unchecked.
#
# Usage: deploy/prometheus/check.sh   (PYTHON=... to choose the interpreter for step 3)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$(command -v python3 || command -v python)}"
if ! command -v promtool >/dev/null 2>&1; then
  echo "FAIL: promtool is not on PATH (Debian: apt-get install -y prometheus)" >&2
  exit 1
fi
queries="$(mktemp --suffix=.yml)"
trap 'rm -f "$queries"' EXIT
cd "$here"
promtool --version 2>&1 | head -n 1
promtool check rules alerts.yml
promtool test rules alerts_test.yml
"$py" ../grafana/build.py --rules >"$queries"
echo "Grafana queries:"
promtool check rules "$queries"
