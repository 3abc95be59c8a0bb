#!/usr/bin/env bash
# README command 2: the same set-up, then the test suite (extra arguments go to pytest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
.venv/bin/python -m pytest "$@"
