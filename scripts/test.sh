#!/usr/bin/env bash
# README command 2: the same set-up, then the test suite (extra arguments go to pytest).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# The browser test of the UI drives Debian's chromium through chromedriver; install them where apt-get may
# (root, no sudo prompt). Elsewhere that test is skipped with its reason.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing chromium and chromium-driver for the UI test"
    (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }) \
      || echo "[test] warning: could not install chromium: the UI test will be skipped"
  else
    echo "[test] chromium/chromedriver not found: the UI test will be skipped (apt-get install chromium chromium-driver)"
  fi
fi
.venv/bin/python -m pytest "$@"
