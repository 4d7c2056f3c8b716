#!/usr/bin/env bash
# The peer's own environment: .venv-peer with bench/peer/requirements.txt (once per machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -f .venv-peer/.installed ] || [ bench/peer/requirements.txt -nt .venv-peer/.installed ]; then
  python3 -m venv .venv-peer
  .venv-peer/bin/python -m pip install -q --upgrade pip
  .venv-peer/bin/python -m pip install -q -r bench/peer/requirements.txt
  touch .venv-peer/.installed
fi
