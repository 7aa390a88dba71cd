#!/usr/bin/env bash
# The test suite, set-up included: the toolkit's .venv (and MobileNetV2's ImageNet weights in
# torch's hub cache), Label Studio in .venv-studio, Debian's photo stamps, Debian's PostgreSQL
# server binaries (the session starts a throwaway server from them) and chromium (for the
# report test), then every
# test (unit, slow and integration; the integration tests start and stop their own server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_studio.sh
bash scripts/setup_photos.sh
bash scripts/setup_postgres.sh
# Chromium renders the report page in one test; without it that test skips and says why.
bash scripts/setup_browser.sh || echo "test: no chromium; the report's browser test will skip"
exec .venv/bin/python -m pytest "$@"
