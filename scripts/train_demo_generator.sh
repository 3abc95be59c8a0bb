#!/usr/bin/env bash
# Re-make the demo generator's shipped weights with the project's own training asset.
#   bash scripts/train_demo_generator.sh [OUT_DIR]        (default OUT_DIR: weights/demo_generator)
# Profile from $REALRAG_CONFIG (default configs/demo.yaml). Needs .venv (made by either README command).
# Runs the foundation assets the generator needs, forces the generator to train, and copies the result
# (diffusers UNet safetensors + config + generator.json with the split/config key, and its text encoder) to OUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-weights/demo_generator}"
start=$(date +%s)
.venv/bin/dagster asset materialize -m pipelines.definitions \
  --select image_source,world_splits,judge,generator \
  --config-json '{"ops": {"generator": {"config": {"force_retrain": true}}}}'
SRC="$(.venv/bin/python -c 'from realrag_core.config.loading import load_config; print(load_config().artifacts_root)')/checkpoints/generator"
mkdir -p "$OUT"
cp "$SRC/config.json" "$SRC/diffusion_pytorch_model.safetensors" "$SRC/generator.json" "$OUT/"
mkdir -p "$OUT/text_encoder"   # its own frozen text encoder (generator.text_encoder's recipe), reused when present
cp "$SRC/text_encoder/open_clip_config.json" "$SRC/text_encoder/open_clip_model.safetensors" \
  "$SRC/text_encoder/training.json" "$OUT/text_encoder/"
echo "[train_demo_generator] weights in $OUT after $(( $(date +%s) - start )) s"
