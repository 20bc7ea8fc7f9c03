#!/usr/bin/env bash
# Create .venv and install the toolkit with its dev extras. Keeps a torch already in .venv;
# otherwise installs torch==2.13.0 from the pip index first. Either way torch is pinned through a
# constraints file, so that no later install upgrades it (an eager upgrade pulls a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
TORCH=$(python -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$TORCH" > .venv/torch-constraint.txt
python -m pip install -q -c .venv/torch-constraint.txt -e ".[dev]"
