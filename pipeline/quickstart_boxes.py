"""The quickstart for boxes (``labelloop quickstart --task detection``): the mnist-detection
canvases through the whole detection loop, a simulated person drawing boxes in a real
(embedded) Label Studio.

The export's fixed test split (500 of 2,500 images by default) stays out of the pool and
measures the champion. Each round prints the images people labeled, the share of the pool
accepted as machine labels, how many of those are right against the truth (every object found
at IoU >= 0.5 with its class, nothing extra), and the champion's mAP@0.5 on the test images.
Running it again continues the same project.
"""

from __future__ import annotations

import os
from pathlib import Path

from labeling.boxes import image_matches
from labeling.boxes_file import BOXES_FILE, read_boxes_json
from labeling.studio.box_annotator_sim import load_box_truth, simulate_box_annotations
from pipeline.certify import describe
from pipeline.delivery import deliver
from pipeline.detection_dataset import CLASSES, export_mnist_detection
from pipeline.detection_model import predict_values, score_boxes
from pipeline.project.config import CONFIG_NAME
from pipeline.project.lock import WorkspaceLock
from pipeline.project.workspace import init_project
from pipeline.quickstart import change_defaults, locked_round, open_demo
from pipeline.round import session as studio_session
from pipeline.round.sync import pull
from training.detection.checkpoint import load_detector

# A first batch large enough that its held-out half can certify something by round 2.
DEMO_SETTINGS = (("initial_random = 100", "initial_random = 200"),)


def prepare(folder: Path, n_images: int) -> tuple[Path, dict, list[tuple[str, dict]]]:
    """Export the canvases once and link them into the pool and the test folders; returns
    the config path, the pool's truth (item key -> boxes) and the test set [(path, boxes)]."""
    export = folder / "mnist-detection-export"
    if not (export / BOXES_FILE).exists():
        export_mnist_detection(export, n_images=n_images, progress=True)
    read = read_boxes_json(export / BOXES_FILE)
    pool_dir, test_dir = folder / "images", folder / "test-images"
    for d in (pool_dir, test_dir):
        d.mkdir(parents=True, exist_ok=True)
    test_rows = []
    for path, image in read.images.items():
        target = (test_dir if image.split == "test" else pool_dir) / path.name
        if not target.exists():
            os.link(path, target)  # same bytes, so the same item key as the export's file
        if image.split == "test":
            test_rows.append((str(target), {"width": image.width, "height": image.height,
                                            "boxes": image.boxes}))
    truth = {k: v for k, v in load_box_truth(export / BOXES_FILE).items()
             if v.split == "pool"}
    config_path = folder / CONFIG_NAME
    if not config_path.exists():
        init_project(folder, images=pool_dir, classes=list(CLASSES),
                     name="detection-quickstart", task="detection")
        change_defaults(config_path, DEMO_SETTINGS)
    return config_path, truth, test_rows


def round_line(project, round_no: int, truth: dict, test_rows) -> str:
    """People's images, coverage, machine labels right against the truth, champion mAP."""
    labels = project.store.current_labels()
    human = sum(lab.source == "human" for lab in labels.values())
    machine = {k: lab for k, lab in labels.items() if lab.source == "machine"}
    pool = len(project.store.items()) - human
    right = sum(image_matches(truth[k].boxes, lab.value["boxes"]) for k, lab in machine.items()
                if k in truth)
    share = f"{right / len(machine):.4f}" if machine else "-"
    champion = project.registry.champion()
    quality = "-"
    if champion is not None:
        model = load_detector(project.registry.checkpoint_path(champion.version))
        predicted = predict_values(model, [p for p, _ in test_rows])
        scores = score_boxes(predicted, [v for _, v in test_rows], project.classes)
        quality = f"{scores['map_50']:.4f} (v{champion.version})"
    return (f"round {round_no:2d}: images labeled by people {human:5d} | auto-accepted "
            f"{len(machine):5d} = {len(machine) / max(1, pool):6.1%} of the pool | right "
            f"{share} | champion test mAP@0.5 {quality}")


def run_detection_quickstart(folder: Path, *, rounds: int, noise: float, seed: int,
                             env: dict[str, str], n_images: int = 2500) -> None:
    """Prepare (once), then run ``rounds`` more rounds, each answered by the simulated person
    drawing boxes; prints one line per round and where to look at the end."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    config_path, truth, test_rows = prepare(folder, n_images)
    project, studio = open_demo(config_path, env, len(test_rows))
    try:
        done_before = len([r for r in project.store.rounds() if r["status"] == "done"])
        for n in range(done_before + 1, done_before + rounds + 1):
            locked_round(project)
            studio_client, sp = studio_session.session(project)
            sim = simulate_box_annotations(studio_client, sp, truth, fault_rate=noise,
                                           seed=seed + n)
            print(round_line(project, n, truth, test_rows) + f" | answered {sim.answered}")
        # The last round's answers came after its sync: read them, or the export and the
        # certificate below leave them out.
        with WorkspaceLock(project.config.workspace_dir / "lock",
                           command="labelloop quickstart"):
            pull(project)
        # With its certificate: one from an earlier `labelloop export` there would be stale.
        delivered = deliver(project.store, project.config, folder / "labels.coco.json",
                            format="coco", force=True)
        exported = delivered.report
        print()
        print(f"Label Studio: {studio['url']}  (login {studio['username']}, password in "
              f"{studio['password_file']})")
        print(f"Labeled dataset: {exported.out} (COCO, {exported.rows} images with provenance: "
              f"{', '.join(f'{n} {s}' for s, n in sorted(exported.by_source.items()))})")
        print(f"Project: {config_path} (`labelloop status --config {config_path}`)")
        print(f"Certificate ({delivered.certificate_file}): "
              f"{describe(delivered.certificate)}")
    finally:
        project.close()
