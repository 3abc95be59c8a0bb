#!/usr/bin/env bash
# Shared set-up of the two README commands. Idempotent: a second run only checks what is there.
#  - .venv at the repo root with the exact pins of constraints.txt (torch 2.14.1 / torchvision 0.29.1)
#  - a persistent Dagster instance in .dagster_home (SQLite, telemetry off)
#  - the demo world's npm packages in .cache/emoji-npm, integrity-checked
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp="$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat .venv/.realrag-stamp 2>/dev/null || true)" != "$stamp" ]; then
  echo "[setup] installing dependencies (pinned by constraints.txt)"
  start=$(date +%s)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  echo "$stamp" > .venv/.realrag-stamp
  echo "[setup] dependencies installed in $(( $(date +%s) - start )) s"
fi

export DAGSTER_HOME="$ROOT/.dagster_home"
mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

# Not fatal: offline, the smoke profile and the tests still run (the real-package tests are skipped), and
# the demo's image_source asset fails later with npm's own message.
if command -v npm >/dev/null 2>&1; then
  .venv/bin/python -m realrag_core.demo_world fetch --cache .cache/emoji-npm \
    || echo "[setup] warning: could not fetch the demo world's npm packages (offline?)"
else
  echo "[setup] npm not found: the demo world cannot be fetched (the smoke profile and the tests still run)"
fi
