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
# requirements.txt as constraints: setup.py's ranges, resolved to the tested
# pins (torchaudio 2.11 only loads beside torch 2.11 from PyPI).
# uv (pinned there too) installs the same pins from PyPI in 43 s where pip
# took 129 s on a fresh clone (2 cores): it downloads and unpacks the ~5 GB
# in parallel. Its cache is a throwaway folder, for the reason above. It
# compiles the bytecode as pip does: without it (and where
# PYTHONDONTWRITEBYTECODE is set) every process imports torch from source,
# 12.3 s instead of 6.6 s, which doubled the test suite's time. Where uv
# cannot be installed, pip does the same job.
if python -m pip install -q -c requirements.txt uv; then
    UV_CACHE_DIR=$(mktemp -d)
    export UV_CACHE_DIR UV_COMPILE_BYTECODE=1
    trap 'rm -rf "$UV_CACHE_DIR"' EXIT
    uv pip install -q -c requirements.txt --upgrade pip
    uv pip install -q -c requirements.txt -e ".[$EXTRA]"
else
    echo "install.sh: uv unavailable, installing with pip" >&2
    python -m pip install -q --upgrade pip
    python -m pip install -q -c requirements.txt -e ".[$EXTRA]"
fi
