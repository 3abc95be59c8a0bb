#!/usr/bin/env bash
# The prepared GPU check (issue 4): on one GPU, in about 5 min with start-up, (1) the GPU-side smoke stages in
# bf16 (every generator route on tiny models, retriever loss steps, Inception FID plumbing) and (2) real-size
# architectures with random weights (ViT-L-14 images/s; SD1.5- and SDXL-size UNet steps/s at batch 1 and 8, SDPA,
# eager vs torch.compile). Results go to $OUT (or ./gpu_out): gpu_smoke.json, bench_gpu.json and the logs.
#
# On a machine with PyTorch but no registry: first, where pip works, `bash scripts/gpu_wheels.sh`, then send the
# repository with .whl/ (the device tool: carry [".whl"]) and run `bash scripts/gpu_check.sh`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-gpu_out}"; mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi
PY="${PYTHON:-python3}"
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/realrag-site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/realrag-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
status=0
timeout 150 $PY bench/gpu_smoke.py --device cuda --dtype bfloat16 --out "$OUT/gpu_smoke.json" 2>&1 | tee "$OUT/gpu_smoke.log" || status=1
timeout 330 $PY bench/bench_gpu_architectures.py --device cuda --dtype bfloat16 --budget-s 240 \
  --out "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log" || status=1
exit $status
