"""Label efficiency of each query strategy against random sampling, on real images.

Runs `labelloop simulate` for every strategy and seed (each run cached as JSON in --out, so an
interrupted benchmark resumes), writes summary.json and one PNG with every learning curve
(mean and min-max spread), and prints, per strategy, the labels needed to reach 90% and 95%
test accuracy (mean over seeds) and the ratio to random's.

    .venv/bin/python scripts/bench_label_efficiency.py --dataset mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from labeling.strategies import list_strategies
from pipeline.simulate import (
    SimulationSettings,
    labels_to_reach,
    plot_curves,
    simulate,
    write_results,
)

LEVELS = (0.90, 0.95)


def run_one(settings: SimulationSettings, out: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    path = out / (f"{settings.dataset}-{settings.strategy}-i{settings.initial}-b{settings.batch}"
                  f"-n{settings.budget}-seed{settings.seed}.json")
    if path.exists():
        return json.loads(path.read_text())
    start = time.perf_counter()
    results = simulate(settings)
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_results(results, path)
    print(f"  done {settings.strategy} seed {settings.seed}: "
          f"{results['curve'][-1]['accuracy']:.4f} at {results['curve'][-1]['labels']} labels "
          f"({results['seconds']} s)", flush=True)
    return results


def summarise(runs: list[dict]) -> dict:
    summary: dict = {}
    for strategy in sorted({r["strategy"] for r in runs}):
        mine = [r for r in runs if r["strategy"] == strategy]
        row = {"seeds": [r["seed"] for r in mine]}
        for level in LEVELS:
            reached = [labels_to_reach(r["curve"], level) for r in mine]
            row[f"labels_to_{int(level * 100)}"] = reached
            row[f"mean_labels_to_{int(level * 100)}"] = (
                sum(reached) / len(reached) if all(v is not None for v in reached) else None)
        row["final_accuracy"] = [r["curve"][-1]["accuracy"] for r in mine]
        summary[strategy] = row
    return summary


def print_table(summary: dict) -> None:
    base = summary.get("random", {})
    print(f"\n{'strategy':<16}" + "".join(
        f"{'labels->' + str(int(lv * 100)) + '%':>14}{'vs random':>11}" for lv in LEVELS))
    for strategy, row in summary.items():
        line = f"{strategy:<16}"
        for level in LEVELS:
            key = f"mean_labels_to_{int(level * 100)}"
            mine, theirs = row[key], base.get(key)
            shown = f"{mine:.0f}" if mine is not None else "not reached"
            ratio = f"{mine / theirs:.2f}x" if mine is not None and theirs else "-"
            line += f"{shown:>14}{ratio:>11}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["digits", "mnist"])
    parser.add_argument("--strategies", nargs="+", default=list_strategies())
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel runs (each gets cores/jobs torch threads)")
    parser.add_argument("--out", type=Path, default=Path("results/label_efficiency"))
    args = parser.parse_args()
    unknown = set(args.strategies) - set(list_strategies())
    if unknown:
        parser.error(f"unknown strategies {sorted(unknown)}; valid: {list_strategies()}")

    args.out.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    todo = [SimulationSettings(dataset=args.dataset, strategy=s, seed=seed,
                               initial=args.initial, batch=args.batch, budget=args.budget)
            for s in args.strategies for seed in args.seeds]
    print(f"{len(todo)} runs on {args.dataset}: {args.strategies} x seeds {args.seeds}, "
          f"{args.initial} + {args.batch}/step to {args.budget} labels, {args.jobs} at a time")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(run_one, todo, [args.out] * len(todo), [threads] * len(todo)))
    summary = summarise(runs)
    (args.out / "summary.json").write_text(json.dumps(
        {"dataset": args.dataset, "initial": args.initial, "batch": args.batch,
         "budget": args.budget, "strategies": summary}, indent=2))
    plot_curves(runs, args.out / "curves.png",
                title=f"{args.dataset}: test accuracy vs labels (mean, min-max over seeds)")
    print_table(summary)
    print(f"\n{time.perf_counter() - start:.0f} s; wrote {args.out / 'summary.json'} "
          f"and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
