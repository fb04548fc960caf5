#!/usr/bin/env bash
# Regenerates augment/tests/fixtures/tf_ops.json with TensorFlow (CPU) from PyPI,
# in its own venv (.venv-tf, ~1.5 GB) so the project's torch venv is untouched.
# The fixture is committed: tests never need TensorFlow.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${TF_VENV:-.venv-tf}
if [[ ! -x $VENV/bin/python ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'tensorflow-cpu==2.21.0' 'numpy<3'
fi
TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 "$VENV/bin/python" scripts/tf_fixtures.py augment/tests/fixtures/tf_ops.json
