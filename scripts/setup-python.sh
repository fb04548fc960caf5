#!/usr/bin/env bash
# Creates the project-local Python venv (.venv) used by benchmarks and fixture
# scripts. Re-running it is cheap: it reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
want="pillow numpy"
missing=""
for pkg in $want; do
  .venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('${pkg/pillow/PIL}') else 1)" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check $missing
fi
