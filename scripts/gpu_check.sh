#!/usr/bin/env bash
# The checks that need a CUDA GPU; the steps' time limits add up to 7.5 minutes (plus make venv):
#   1. the environment (make venv, unless PYTHON names an interpreter that has
#      torch with CUDA and gumbelkit installed), nvidia-smi and the versions;
#   2. the GPU-marked tests (pytest -m cuda);
#   3. gumbelkit doctor --cuda-compile (every Triton form for sm_80 and sm_90);
#   4. gumbelkit bench --device cuda (the timing table).
# Each step's output goes to OUT/<step>.txt and its exit code to OUT/status.txt;
# a failed step does not stop the later ones, and the script exits 1 if any failed.
#
# Usage: scripts/gpu_check.sh OUT        (or: make gpu-check OUT=folder)
set -u -o pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: scripts/gpu_check.sh OUT (the folder for the outputs)" >&2
    exit 2
fi
out=$1
mkdir -p "$out" || { echo "gpu_check: cannot create $out" >&2; exit 2; }
cd "$(dirname "$0")/.."

if [ -z "${PYTHON:-}" ]; then
    make venv >"$out/venv.txt" 2>&1 || { echo "gpu_check: make venv failed, see $out/venv.txt" >&2; exit 1; }
    PYTHON=.venv/bin/python
fi

failed=0
: >"$out/status.txt"
step() {  # step NAME SECONDS COMMAND...: run with a time limit, record the exit code
    local name=$1 limit=$2 code
    shift 2
    echo "== $name: $*"
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.txt" 2>&1
    code=$?
    echo "$name $code" >>"$out/status.txt"
    tail -n 40 "$out/$name.txt"
    [ "$code" -eq 0 ] || failed=1
}

# fails without a GPU: every later step would then only skip or refuse
step environment 45 bash -c "set -e; nvidia-smi; $PYTHON -c 'import sys, torch, triton; \
print(\"torch\", torch.__version__, \"CUDA\", torch.version.cuda, \"triton\", triton.__version__); \
print(torch.cuda.get_device_name() if torch.cuda.is_available() else \"no CUDA device\"); \
sys.exit(0 if torch.cuda.is_available() else 1)'"
step tests 210 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider
step doctor 105 "$PYTHON" -m gumbelkit doctor --cuda-compile
step bench 90 "$PYTHON" -m gumbelkit bench --device cuda --repeats 20

echo "== status (step exit-code):"
cat "$out/status.txt"
exit "$failed"
