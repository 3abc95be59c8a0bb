#!/usr/bin/env bash
# README command 2: the same set-up, then the test suite (extra arguments go to pytest).
set -euo pipefail
export REALRAG_FETCH_DEMO_WORLD=1   # the real-package tests need the demo world's npm packages whatever the profile
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# Debian packages some tests start: chromium + chromium-driver (the browser test of the UI) and redis-server (the
# broker of the Celery test). Installed where apt-get may (root, no sudo prompt); elsewhere those tests are skipped
# with their reason.
need=()
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || need+=(chromium chromium-driver)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test] installing ${need[*]} (Debian packages the UI and Celery tests start)"
    (apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${need[@]}" >/dev/null 2>&1; }) \
      || echo "[test] warning: could not install ${need[*]}: the tests that need them will be skipped"
  else
    echo "[test] ${need[*]} not found: the tests that need them will be skipped (apt-get install ${need[*]})"
  fi
fi
# pytest-xdist workers: one per core, at most 4 (REALRAG_TEST_WORKERS=N to choose, 0 for one process). Tests that
# share a folder outside tmp_path stay on one worker (loadgroup); each worker gives torch its share of the cores, and
# the executor tests hand that thread count to their step processes, so floats round as in the reference run.
cores=$(nproc 2>/dev/null || echo 1)
workers=${REALRAG_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
[ "$workers" = 1 ] && workers=0
.venv/bin/python -m pytest -n "$workers" --dist loadgroup --durations 15 "$@"
