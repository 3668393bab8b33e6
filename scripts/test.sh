#!/usr/bin/env bash
# Set everything up, then run the test suite. Extra arguments go to pytest (e.g. --run-large).
# pytest's exit code 5 ("no tests collected") counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# The page test drives headless Chromium (tests/serve/test_page.py); without it, it says it is skipped.
if { ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; } || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[test] installing chromium and chromium-driver for the page test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
      || echo "[test] could not install Chromium; the page test will be skipped (it says so)"
  fi
fi
.venv/bin/python -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "no tests were collected: failing" >&2
  exit 1
fi
exit "$status"
