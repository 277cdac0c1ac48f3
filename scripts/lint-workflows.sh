#!/usr/bin/env bash
# Lints the GitHub Actions configuration, offline:
#   - check-jsonschema with its vendored schemas: workflows (vendor.github-workflows),
#     local composite actions (vendor.github-actions) and .github/dependabot.yml
#     (vendor.dependabot);
#   - zizmor --offline over .github/ (workflows, composite actions, dependabot config).
# Every check runs; the script exits non-zero if any of them reports anything.
# Tools come from .venv/bin when present (both are pinned in requirements.txt), else PATH.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tool() {
  if [ -x ".venv/bin/$1" ]; then
    echo ".venv/bin/$1"
  elif command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  else
    echo "lint-workflows: $1 not found in .venv/bin or PATH (pip install -r requirements.txt)" >&2
    return 1
  fi
}

check_jsonschema="$(tool check-jsonschema)"
zizmor="$(tool zizmor)"

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
actions=(.github/actions/*/action.yml .github/actions/*/action.yaml)
shopt -u nullglob

status=0
run() {
  echo "+ $*"
  "$@" || status=1
}

if [ "${#workflows[@]}" -eq 0 ]; then
  echo "lint-workflows: no workflows under .github/workflows" >&2
  status=1
else
  run "$check_jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
fi
if [ "${#actions[@]}" -gt 0 ]; then
  run "$check_jsonschema" --builtin-schema vendor.github-actions "${actions[@]}"
fi
if [ -f .github/dependabot.yml ]; then
  run "$check_jsonschema" --builtin-schema vendor.dependabot .github/dependabot.yml
fi

# --strict-collection: a file zizmor cannot parse is an error, not a skipped warning.
run "$zizmor" --offline --strict-collection --no-progress .github/

if [ "$status" -ne 0 ]; then
  echo "lint-workflows: FAILED" >&2
else
  echo "lint-workflows: OK"
fi
exit "$status"
