"""The loop's auto-labeling figures on MNIST, with the simulated annotator in a real Label Studio.

For each annotator noise level: a fresh project (4,000 pool images, 1,000 test images kept out),
rounds until the whole pool carries a label or the human budget is spent. Per round it prints
human labels, coverage (machine labels / pool), the realized error of auto-accepted labels
against ground truth, the accuracy of all the pool's labels, and the champion's test accuracy.
At the end: coverage and realized error at <= 1,000 human labels, and the human labels needed
until every pool item had a label with >= 98% label accuracy, as a fraction of the pool.

    .venv/bin/python scripts/bench_loop.py --noise 0 0.05 --out results/loop
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from labeling.studio import server
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.quickstart import prepare, round_line
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round


def pool_figures(project, truth: dict[str, str]) -> dict:
    items = {i.key: str(Path(i.path).resolve()) for i in project.store.items()}
    labels = project.store.current_labels()
    human = {k: v for k, v in labels.items() if v.source == "human"}
    machine = {k: v for k, v in labels.items() if v.source == "machine"}
    machine_wrong = sum(truth[items[k]] != v.label for k, v in machine.items())
    all_right = sum(truth[items[k]] == v.label for k, v in labels.items())
    return {
        "human": len(human), "machine": len(machine), "pool": len(items),
        "coverage": len(machine) / max(1, len(items) - len(human)),
        "machine_error": machine_wrong / len(machine) if machine else None,
        "labeled_fraction": len(labels) / len(items),
        "label_accuracy": all_right / max(1, len(labels)),
    }


def run(noise: float, out: Path, *, max_rounds: int, budget: int, batch: int) -> dict:
    folder = out / f"noise{noise:g}"
    folder.mkdir(parents=True, exist_ok=True)
    config_path, truth, test_rows = prepare(folder)
    text = config_path.read_text()
    text = re.sub(r"(?m)^batch_size = 100$", f"batch_size = {batch}", text)
    config_path.write_text(text)
    project = open_project(find_config(config_path), env=dict(os.environ))
    ingest_folder(project.store, project.config.images_dir)
    studio_session.ensure_embedded_server(project)
    rows, done = [], len(project.store.rounds())
    for n in range(done + 1, max_rounds + 1):
        start = time.perf_counter()
        run_round(project)
        figures = pool_figures(project, truth)
        line = round_line(project, n, truth, test_rows)
        studio_session.simulate_annotators(project, truth, noise=noise, seed=n)
        figures["seconds"] = round(time.perf_counter() - start, 1)
        rows.append({"round": n, **figures})
        print(f"[noise {noise:g}] {line} | pool label accuracy "
              f"{figures['label_accuracy']:.4f} on {figures['labeled_fraction']:.1%} labeled",
              flush=True)
        complete = figures["labeled_fraction"] >= 0.999
        if complete or figures["human"] >= budget:
            break
    server.stop(project.config.studio_dir)  # the next noise level starts its own
    project.close()
    within = [r for r in rows if r["human"] <= 1000]
    at_1000 = within[-1] if within else None
    finished = [r for r in rows if r["labeled_fraction"] >= 0.999 and r["label_accuracy"] >= 0.98]
    summary = {
        "noise": noise, "rounds": rows,
        "at_1000_human": at_1000,
        "human_fraction_to_label_pool_at_98": (finished[0]["human"] / finished[0]["pool"]
                                               if finished else None),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.05])
    parser.add_argument("--out", type=Path, default=Path("results/loop"))
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=2000, help="stop at this many human labels")
    parser.add_argument("--batch", type=int, default=100, help="items sent to people per round")
    args = parser.parse_args()
    for noise in args.noise:
        s = run(noise, args.out.resolve(), max_rounds=args.max_rounds, budget=args.budget,
                batch=args.batch)
        a = s["at_1000_human"]
        print(f"\nnoise {noise:g}: at <= 1,000 human labels ({a['human'] if a else '-'}): "
              f"coverage {a['coverage']:.1%}, realized error of auto-accepted labels "
              f"{a['machine_error'] if a and a['machine_error'] is not None else '-'}")
        frac = s["human_fraction_to_label_pool_at_98"]
        print(f"noise {noise:g}: human labels to label the whole pool at >= 98% accuracy: "
              f"{f'{frac:.1%} of the pool' if frac is not None else 'not reached'}\n")


if __name__ == "__main__":
    main()
