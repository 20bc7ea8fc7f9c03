#!/usr/bin/env bash
# The test command: install (scripts/setup.sh), lint, then the full test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
python -m pytest -q "$@"
