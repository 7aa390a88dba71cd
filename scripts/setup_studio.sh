#!/usr/bin/env bash
# Label Studio in its own virtual environment, .venv-studio (it pins Django, pandas, numpy and
# more; labelloop talks to it over HTTP only, never imports it). Idempotent: when the right
# version is already installed and its interpreter works, this returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VERSION="1.23.2"
VENV=.venv-studio

installed_ok() {
    # Reads the package metadata only: `label-studio --version` would start Django.
    [ -x "$VENV/bin/label-studio" ] && "$VENV/bin/python" - "$VERSION" <<'PY' 2>/dev/null
import importlib.metadata, sys
sys.exit(importlib.metadata.version("label-studio") != sys.argv[1])
PY
}

if installed_ok; then
    echo "setup_studio: $VENV ready (label-studio $VERSION)"
    exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup_studio: Label Studio $VERSION needs Python >= 3.10 (found" \
         "$("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
    exit 1
fi
echo "setup_studio: installing label-studio $VERSION into $VENV (a few minutes)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "label-studio==$VERSION"
if ! installed_ok; then
    echo "setup_studio: label-studio $VERSION did not install correctly into $VENV" >&2
    exit 1
fi
echo "setup_studio: $VENV ready (label-studio $VERSION)"
