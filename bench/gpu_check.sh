#!/usr/bin/env bash
# The GPU check: one short script for a machine with an NVIDIA GPU (DEVELOPERS.md: the lent H200).
#   (a) the GPU tests: fp16/bf16 with the NaN guard and the float32 VAE retry, Gram in float32,
#       channels_last, a seeded run reproducible twice (tests/test_gpu.py);
#   (b) the 512x512 benches: SD 1.5 architecture (random weights) 30 steps unguided vs fast vs full,
#       the Gatys default preset per iteration, the fast network in ms per frame (bench/bench_gpu.py).
# Writes one table to $OUT/gpu_table.md (or ./gpu_table.md) and the test log beside it. Fits in one
# 10-minute call: the tests take about a minute, the benches a few.
#
# On the device tool's machine the Python has torch but not diffusers/open_clip: carry their wheels
# in .whl/ (see the device README) and this script installs them into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: installing the carried wheels failed"; exit 2; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
py="${PYTHON:-python3}"
[ -x .venv/bin/python ] && py=.venv/bin/python
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)" \
  || { echo "gpu_check: no CUDA device here; nothing to check"; exit 3; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu_name.txt"
PYTHONUNBUFFERED=1 timeout 240 "$py" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.log"
tests=${PIPESTATUS[0]}
PYTHONUNBUFFERED=1 timeout 300 "$py" bench/bench_gpu.py --repeats 3 --out "$out/gpu_table.md"
bench=$?
echo "gpu_check: tests exit $tests, bench exit $bench; table in $out/gpu_table.md"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
