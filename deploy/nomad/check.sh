#!/usr/bin/env bash
# Check the Nomad job files in this folder.
#
# With `nomad` on PATH: every *.nomad.hcl is parsed and its variables evaluated locally
# (`nomad job run -output`, which submits nothing), then, when a Nomad agent answers at
# NOMAD_ADDR, validated by the servers (`nomad job validate`: drivers, resources, ...).
# Without `nomad`: says so plainly and, if Python has the `hcl2` module (python-hcl2), at least
# parses the HCL syntax, which is no substitute for a Nomad validation.
#
# Usage: deploy/nomad/check.sh [VARS_FILE]   (default: inferq.example.vars.hcl beside this)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
vars="${1:-$here/inferq.example.vars.hcl}"
jobs=("$here"/*.nomad.hcl)
failed=0

if ! command -v nomad >/dev/null 2>&1; then
  echo "SKIPPED: nomad is not on PATH, so no job file was validated."
  py="$(command -v python3 || true)"
  if [ -n "$py" ] && "$py" -c "import hcl2" >/dev/null 2>&1; then
    echo "Parsing HCL syntax only (python-hcl2; not a Nomad validation):"
    err="$(mktemp)"
    files=("$here"/*.hcl)
    case "$vars" in "$here"/*) ;; *) files+=("$vars") ;; esac
    for f in "${files[@]}"; do
      if "$py" -c "import sys, hcl2; hcl2.load(open(sys.argv[1]))" "$f" 2>"$err"; then
        echo "  syntax ok   $(basename "$f")"
      else
        echo "  SYNTAX FAIL $(basename "$f"): $(tail -n 1 "$err")"
        failed=1
      fi
    done
    rm -f "$err"
  else
    echo "(python3 with python-hcl2 would at least check the HCL syntax: pip install python-hcl2)"
  fi
  exit "$failed"
fi

flags=(-hcl2-strict=false "-var-file=$vars")
agent=0
if nomad agent-info >/dev/null 2>&1; then
  agent=1
else
  echo "note: no Nomad agent at ${NOMAD_ADDR:-http://127.0.0.1:4646}; local parsing only."
fi

for f in "${jobs[@]}"; do
  name="$(basename "$f")"
  if ! nomad job run -output "${flags[@]}" "$f" >/dev/null; then
    echo "FAIL   $name (parse)"
    failed=1
    continue
  fi
  if [ "$agent" -eq 1 ]; then
    if nomad job validate "${flags[@]}" "$f" >/dev/null; then
      echo "ok     $name (validated)"
    else
      echo "FAIL   $name (validate)"
      failed=1
    fi
  else
    echo "parsed $name"
  fi
done
exit "$failed"
