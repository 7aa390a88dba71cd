#!/usr/bin/env bash
# The main job: set up, then the quickstart: MNIST (4,000 pool images, 1,000 held out for
# testing) through the whole loop, with a simulated annotator answering in an embedded Label
# Studio. Running it again continues the same project (demo/); it never starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_studio.sh
exec .venv/bin/labelloop quickstart --folder demo "$@"
