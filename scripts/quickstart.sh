#!/usr/bin/env bash
# Set everything up, then run the quickstart: synthetic SYSU-layout data -> short CPU training ->
# SYSU all-search single-shot evaluation -> SavedModel export. Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mpanet-tf quickstart "$@"
