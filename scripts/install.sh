#!/usr/bin/env bash
# Creates .venv (if needed) and installs this package in editable mode with
# one extra ("dev" by default: tests and lint; "demo": the offline demo),
# every version pinned by requirements.txt. Safe to re-run.
#   bash scripts/install.sh [dev|demo]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${1:-dev}
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
# No pip cache: the CUDA build of torch and its libraries are ~5 GB
# unpacked; keeping the wheels too would almost double the disk needed.
export PIP_NO_CACHE_DIR=1
python -m pip install -q --upgrade pip
# requirements.txt as constraints: setup.py's ranges, resolved to the tested
# pins (torchaudio 2.11 only loads beside torch 2.11 from PyPI).
python -m pip install -q -c requirements.txt -e ".[$EXTRA]"
