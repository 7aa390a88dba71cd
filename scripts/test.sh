#!/usr/bin/env bash
# The test suite, set-up included: the toolkit's .venv, Label Studio in .venv-studio, then every
# test (unit, slow and integration; the integration tests start and stop their own server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_studio.sh
exec .venv/bin/python -m pytest "$@"
