#!/usr/bin/env bash
# README command 1: set up, then materialize every asset on the profile in $REALRAG_CONFIG
# (default configs/demo.yaml: the offline demo world, embedded LanceDB, local SQLite Dagster instance).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
start=$(date +%s)
# the project's .venv as the active one (dg warns when the active environment is not the project's)
export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
# a profile that does not load (a class folder not made yet, a typo) says why in one line, before Dagster starts
.venv/bin/python -m realrag_core.config || exit 2
.venv/bin/dg launch --job realrag   # Dagster's current CLI (the same as: dagster job execute -m pipelines.definitions -j realrag)
.venv/bin/python -m realrag_core.evaluate.summary
.venv/bin/python -m pipelines.timings --json "$(.venv/bin/python -c 'from realrag_core.config.loading import load_config; print(load_config().artifacts_root)')/reports/timings.json"
echo "[demo] job finished in $(( $(date +%s) - start )) s"
