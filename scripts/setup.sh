#!/usr/bin/env bash
# Shared set-up of the two README commands. Idempotent: a second run only checks what is there.
#  - .venv at the repo root with the exact pins of constraints.txt (torch 2.14.1 / torchvision 0.29.1)
#  - a persistent Dagster instance: DAGSTER_HOME=<repo root> unless already set, SQLite files in .dagster_home/
#  - the demo world's npm packages in .cache/emoji-npm, integrity-checked
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
# a moved or copied clone: the venv's scripts (dg, dagster, realrag, pip) and its editable install still point at
# the folder it was made in, so it is made again here (about 2.5 min)
if [ -f .venv/bin/pip ]; then
  made_in="$(head -1 .venv/bin/pip | sed -e 's|^#!||' -e 's|/\.venv/bin/python.*$||')"
  if [ "$made_in" != "$ROOT" ]; then
    echo "[setup] .venv was made in $made_in, not here ($ROOT): its scripts point there; making it again"
    rm -rf .venv
  fi
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp="$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat .venv/.realrag-stamp 2>/dev/null || true)" != "$stamp" ]; then
  echo "[setup] installing dependencies (pinned by constraints.txt)"
  start=$(date +%s)
  # grep drops notes of this machine's pip config about absent local wheel folders; pipefail keeps pip's status
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  echo "$stamp" > .venv/.realrag-stamp
  echo "[setup] dependencies installed in $(( $(date +%s) - start )) s"
fi

# dagster.yaml at the root is the instance config; it keeps its SQLite files in .dagster_home/. A DAGSTER_HOME
# already set (another instance: Postgres, a test's temporary folder) is kept, as Dagster itself does.
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT}"

# Not fatal: offline, the smoke profile and the tests still run (the real-package tests are skipped), and
# the demo's image_source asset fails later with npm's own message. Fetched for the tests (test.sh sets
# REALRAG_FETCH_DEMO_WORLD=1) and for a profile that draws from the emoji world; a profile of the user's own images
# (REALRAG_CONFIG=configs/my_folders.yaml) does not need them. A profile that does not load fetches anyway: its
# error comes from the job, with the profile's name.
wants_world="${REALRAG_FETCH_DEMO_WORLD:-}"
if [ -z "$wants_world" ]; then
  status=0; .venv/bin/python -m realrag_core.data.demo_setup needed 2>/dev/null || status=$?
  if [ "$status" = 3 ]; then wants_world=0; else wants_world=1; fi   # 3: not needed; a crash (1) fetches
fi
if [ "$wants_world" = 0 ]; then
  echo "[setup] profile ${REALRAG_CONFIG:-configs/demo.yaml} does not draw from the demo world: its npm packages are not fetched"
elif command -v npm >/dev/null 2>&1; then
  .venv/bin/python -m realrag_core.data.demo_setup fetch --cache .cache/emoji-npm \
    || echo "[setup] warning: could not fetch the demo world's npm packages (offline?)"
else
  echo "[setup] npm not found: the demo world cannot be fetched (the smoke profile and the tests still run)"
fi
