#!/usr/bin/env bash
# Re-make the shipped weights of the demo's base CLIP and judge with the project's own assets.
#   bash scripts/train_demo_models.sh [CLIP_OUT] [JUDGE_OUT]   (defaults: weights/demo_clip weights/demo_judge)
# Profile from $REALRAG_CONFIG (default configs/demo.yaml). Needs .venv (made by either README command).
# Forces both to train with their recipes (configs/demo.yaml: clip, judge), then copies the weights and their
# training key (training.json) to the output folders. The assets use shipped weights only while the key matches.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CLIP_OUT="${1:-weights/demo_clip}"
JUDGE_OUT="${2:-weights/demo_judge}"
start=$(date +%s)
.venv/bin/dagster asset materialize -m pipelines.definitions --select image_source,world_splits,clip_backbone,judge \
  --config-json '{"ops": {"clip_backbone": {"config": {"force_retrain": true}}, "judge": {"config": {"force_retrain": true}}}}'
ART="$(.venv/bin/python -c 'from realrag_core.config.loading import load_config; print(load_config().artifacts_root)')/checkpoints"
for pair in "clip_backbone:$CLIP_OUT" "judge:$JUDGE_OUT"; do
  src="$ART/${pair%%:*}"; out="${pair#*:}"
  mkdir -p "$out"
  cp "$src/open_clip_config.json" "$src/open_clip_model.safetensors" "$src/training.json" "$out/"
done
echo "[train_demo_models] weights in $CLIP_OUT and $JUDGE_OUT after $(( $(date +%s) - start )) s"
