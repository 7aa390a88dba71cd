#!/usr/bin/env bash
# Create .venv in the repo and install labelloop with its dev extra. Idempotent and quick when
# nothing changed. torch/torchvision come from this machine's disk when pip can see them there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "labelloop needs Python >= 3.11 (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
    echo "setup: creating .venv"
    rm -rf .venv
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
fi
# Re-install only when pyproject.toml changed since the last successful install.
stamp=.venv/.labelloop-installed
if [ ! -f "$stamp" ] || ! cmp -s pyproject.toml "$stamp"; then
    echo "setup: installing labelloop and its dependencies into .venv (torch is large: minutes)"
    .venv/bin/pip install --quiet -e '.[dev]'
    cp pyproject.toml "$stamp"
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
# ImageNet weights (MobileNetV2, EfficientNet-Lite0/1/2) into torch's hub cache, for
# weights = "imagenet" offline.
.venv/bin/python scripts/setup_weights.py || echo "setup: some ImageNet weights are missing (above); weights = \"imagenet\" will say what to do"
