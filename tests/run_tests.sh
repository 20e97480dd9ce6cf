#!/usr/bin/env bash
# Run the suite; pytest's exit code 5 ("no tests collected") is a failure, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "ERROR: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
