#!/usr/bin/env bash
# Creates .venv (if needed) and installs the pinned dependencies and this
# package in editable mode. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
# No pip cache: the CUDA build of torch and its libraries are ~5 GB
# unpacked; keeping the wheels too would almost double the disk needed.
export PIP_NO_CACHE_DIR=1
python -m pip install -q --upgrade pip
# torch first: torchaudio 2.11 only loads beside torch 2.11 from PyPI.
python -m pip install -q -r requirements.txt
python -m pip install -q -e ".[dev]"
