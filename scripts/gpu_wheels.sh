#!/usr/bin/env bash
# Fetch the wheels a bare GPU machine with Python 3.12 + PyTorch (and no package registry) lacks for
# scripts/gpu_check.sh, into .whl/ (about 12 MB; ignored by git). Run where pip can reach PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types typing-inspection importlib_metadata torch-fidelity==0.4.0
du -sh .whl
