#!/usr/bin/env bash
# Installs what the tests need on first use (.venv, the "dev" extra), then
# runs the linter and the test suite on the CPU, offline. Extra arguments
# go to pytest (e.g. -x, -k name).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
