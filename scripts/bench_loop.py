"""The loop's auto-labeling figures on MNIST, with simulated people in a real Label Studio.

For each annotator noise level and seed: a fresh project (4,000 pool images, 1,000 test images
kept out), rounds until the whole pool carries a label or the human budget is spent. Noise 0 is
one perfect annotator; a noise above 0 is a crowd of ``--annotators`` accounts whose error
rates average it, errors concentrated on hard images and confusable classes, one of them
anchoring on the pre-annotation, with second opinions, a random double check and the people's
error measured (``labelloop quickstart --annotators``). Per round it prints human answers
(second opinions included: the cost), coverage, the realized error of machine labels against
the truth beside the bound the loop reported, and the accuracy of every delivered label.
At the end, per setting: every seed, then the mean and the worst.

    .venv/bin/python scripts/bench_loop.py --noise 0 0.05 0.1 --seeds 0 1 2 --out results/loop
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from labeling.studio import server
from labeling.studio.opinions import human_answers
from pipeline.certify import project_certificate
from pipeline.crowd import crowd_work, ensure_annotators
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.quickstart import prepare, round_line, use_crowd
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round


def pool_figures(project, truth: dict[str, str]) -> dict:
    """The figures of the pool as it stands (module docstring)."""
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
        "answers": human_answers(project.store),
        # No machine label, no bound to print (the certificate's 0 bounds an empty part).
        "bound": project_certificate(project).get("machine_error_ub") if machine else None,
    }


def run(noise: float, seed: int, out: Path, *, max_rounds: int, budget: int, batch: int,
        annotators: int, port: int = 8080, target: str = "label",
        audit: float | None = None, unsure_floor: float | None = None,
        review: float | None = None, min_points: int | None = None,
        wait: int | None = None, selection: float | None = None,
        blind: float | None = None) -> dict:
    """One setting and seed, to the whole pool labeled or the budget of answers."""
    folder = out / f"noise{noise:g}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config_path, truth, test_rows = prepare(folder)
    crowd = annotators if noise > 0 else 0
    if crowd:
        use_crowd(config_path, crowd)
    text = config_path.read_text()
    text = re.sub(r"(?m)^batch_size = 100$", f"batch_size = {batch}", text)
    text = re.sub(r"(?m)^seed = 0$", f"seed = {seed}", text)
    text = re.sub(r"(?m)^port = 8080$", f"port = {port}", text)
    text = re.sub(r'(?m)^target = "label"$', f'target = "{target}"', text)
    if audit is not None:
        text = re.sub(r"(?m)^audit_fraction = [0-9.]+$", f"audit_fraction = {audit}", text)
    if review is not None:
        text = re.sub(r"(?m)^review_share = [0-9.]+$", f"review_share = {review}", text)
    if min_points is not None:
        text = re.sub(r"(?m)^min_validation_points = [0-9]+$",
                      f"min_validation_points = {min_points}", text)
    if wait is not None:
        text = re.sub(r'(?m)^reference_wait_rounds = "auto"$', f"reference_wait_rounds = {wait}",
                      text)
    if selection is not None:
        text = re.sub(r"(?m)^selection_share = [0-9.]+$", f"selection_share = {selection}",
                      text)
    if blind is not None:
        text = re.sub(r"(?m)^blind_check = [0-9.]+$", f"blind_check = {blind}", text)
    if unsure_floor is not None:
        text = re.sub(r"(?m)^preannotate_min_confidence = [0-9.]+$",
                      f"preannotate_min_confidence = {unsure_floor}", text)
    config_path.write_text(text)
    project = open_project(find_config(config_path), env=dict(os.environ))
    ingest_folder(project.store, project.config.images_dir)
    studio_session.ensure_embedded_server(project)
    if crowd:
        ensure_annotators(project, crowd)
    rows, done = [], len(project.store.rounds())
    for n in range(done + 1, max_rounds + 1):
        start = time.perf_counter()
        run_round(project)
        figures = pool_figures(project, truth)
        line = round_line(project, n, truth, test_rows)
        if crowd:
            crowd_work(project, truth, mean_error=noise, seed=1000 * seed + n)
        else:
            studio_session.simulate_annotators(project, truth, noise=noise, seed=1000 * seed + n)
        figures["seconds"] = round(time.perf_counter() - start, 1)
        rows.append({"round": n, **figures})
        bound = "-" if figures["bound"] is None else f"{figures['bound']:.4f}"
        print(f"[noise {noise:g} seed {seed}] {line} | bound {bound} | delivered accuracy "
              f"{figures['label_accuracy']:.4f} on {figures['labeled_fraction']:.1%} labeled",
              flush=True)
        complete = figures["labeled_fraction"] >= 0.999
        if complete or figures["answers"] >= budget:
            break
    server.stop(project.config.studio_dir)  # the next run starts its own
    project.close()
    within = [r for r in rows if r["answers"] <= 1000]
    at_1000 = within[-1] if within else None
    finished = [r for r in rows if r["labeled_fraction"] >= 0.999]
    machine = [r for r in rows if r["machine_error"] is not None]
    summary = {
        "noise": noise, "seed": seed, "rounds": rows,
        "coverage_at_1000_answers": at_1000["coverage"] if at_1000 else None,
        "worst_machine_error": max((r["machine_error"] for r in machine), default=None),
        "bound_held": all(r["bound"] is not None and r["bound"] >= r["machine_error"]
                          for r in machine),
        "answers_to_label_pool": (finished[0]["answers"] / finished[0]["pool"]
                                  if finished else None),
        "delivered_accuracy": rows[-1]["label_accuracy"] if rows else None,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(noise: float, runs: list[dict]) -> None:
    """Every seed, then the mean and the worst, of one setting."""
    print(f"\nnoise {noise:g}")
    print("seed | coverage at <=1000 answers | worst machine error | bound held | "
          "answers / pool to label all | delivered accuracy")
    for r in runs:
        print(f"{r['seed']:4d} | {_fmt(r['coverage_at_1000_answers'], '.1%'):>26} | "
              f"{_fmt(r['worst_machine_error'], '.4f'):>19} | {str(r['bound_held']):>10} | "
              f"{_fmt(r['answers_to_label_pool'], '.1%'):>28} | "
              f"{_fmt(r['delivered_accuracy'], '.4f')}")
    # A seed that never reached a figure (None: e.g. the pool never fully labeled) makes that
    # column's mean and worst "-": a mean over the seeds that did would flatter the setting.
    columns = (("coverage_at_1000_answers", min, ".1%"), ("worst_machine_error", max, ".4f"),
               ("answers_to_label_pool", max, ".1%"), ("delivered_accuracy", min, ".4f"))
    for name in ("mean", "worst"):
        cells = []
        for key, worst, spec in columns:
            values = [r[key] for r in runs]
            if any(v is None for v in values):
                cells.append("-")
            else:
                cells.append(format(sum(values) / len(values) if name == "mean"
                                    else worst(values), spec))
        held = all(r["bound_held"] for r in runs)
        print(f"{name:>5}| {cells[0]:>26} | {cells[1]:>19} | {str(held):>10} | "
              f"{cells[2]:>28} | {cells[3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.05])
    parser.add_argument("--out", type=Path, default=Path("results/loop"))
    parser.add_argument("--max-rounds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=2000,
                        help="stop at this many human answers")
    parser.add_argument("--batch", type=int, default=100, help="items sent to people per round")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--annotators", type=int, default=3,
                        help="crowd accounts for noise > 0 (noise 0: one perfect annotator)")
    parser.add_argument("--port", type=int, default=8080,
                        help="the embedded Label Studio's port (two benchmarks at once)")
    parser.add_argument("--target", choices=("label", "dataset"), default="label",
                        help="[loop] target: every machine label, or the whole delivered set")
    parser.add_argument("--audit", type=float, default=None,
                        help="[loop] audit_fraction: the random held-out share of each batch")
    parser.add_argument("--preannotate-min-confidence", type=float, default=None,
                        help="[loop] preannotate_min_confidence: tasks the model is less sure "
                             "of go without its guess")
    parser.add_argument("--review-share", type=float, default=None,
                        help="[loop] review_share: second opinions on suspect training labels, "
                             "as a share of each batch (the crowd's default 0.25)")
    parser.add_argument("--min-validation-points", type=int, default=None,
                        help="[loop] min_validation_points: fewest validation items of a "
                             "class above the threshold for it to be accepted")
    parser.add_argument("--reference-wait", type=int, default=None,
                        help="[loop] reference_wait_rounds: rounds the newest held-out items "
                             "wait for their second opinions (default \"auto\")")
    parser.add_argument("--selection-share", type=float, default=None,
                        help="[loop] selection_share: the held-out share that chooses models, "
                             "the rest tests thresholds (default 0.25)")
    parser.add_argument("--blind-check", type=float, default=None,
                        help="[loop] blind_check: the random share of training picks answered "
                             "blind by two people, where rho is measured (the crowd's default "
                             "0.2; before 2026-12-06 0.1 of all items)")
    args = parser.parse_args()
    for noise in args.noise:
        runs = [run(noise, seed, args.out.resolve(), max_rounds=args.max_rounds,
                    budget=args.budget, batch=args.batch, annotators=args.annotators,
                    port=args.port, target=args.target, audit=args.audit,
                    unsure_floor=args.preannotate_min_confidence, review=args.review_share,
                    min_points=args.min_validation_points, wait=args.reference_wait,
                    selection=args.selection_share, blind=args.blind_check)
                for seed in args.seeds]
        print_table(noise, runs)


if __name__ == "__main__":
    main()
