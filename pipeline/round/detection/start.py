"""Where a detection challenger starts (``[training] warm_start``): the champion's weights,
when that is safe, else the configured start weights (ImageNet's backbone).

Continuing the champion carries every image any model of its chain trained on into the
challenger. Such an image may since have become off limits for training: picked as a random
held-out image (an audited machine label the loop trained on), or a near-duplicate of one
(groups grow as images are ingested; ``labeling.near_duplicates``). The held-out images judge
promotion and the accept step's bound, so a model that has seen them, or their twins, would
be judged on what it learned. Each checkpoint therefore keeps its chain's training keys
(``<snapshot>.lineage.json``) and a chain that touches an off-limits key is not continued.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from labeling.near_duplicates import kept_apart
from labeling.selections import picks
from pipeline.files import write_text_atomic
from pipeline.project.project import Project
from pipeline.registry.mlflow_store import CheckpointMissing
from training.detection.checkpoint import CheckpointError, load_detector
from training.detection.params import DetectParams
from training.detection.trained import TrainedDetector


@dataclass(frozen=True)
class Start:
    """The detector to continue (None: start weights), why, and the keys it trained on."""

    model: TrainedDetector | None
    note: str
    lineage: frozenset[str]


def fresh(note: str) -> Start:
    return Start(None, f"start weights ({note})", frozenset())


def start_from(project: Project, params: DetectParams) -> Start:
    """The champion to continue, or the start weights with the reason (module docstring)."""
    if not project.config.training.warm_start:
        return Start(None, "start weights", frozenset())
    info = project.registry.champion()
    if info is None:
        return fresh("no champion yet")
    version = info.version
    # The record first: a champion refused here is never fetched.
    lineage = _lineage(project, info)
    if lineage is None:
        return fresh(f"champion v{version}'s training images are not on record")
    if off := off_limits(project, lineage):
        return fresh(f"champion v{version} trained on {len(off)} image(s) now held out or "
                     f"near-duplicates of held-out ones")
    try:
        champion = load_detector(project.registry.checkpoint_path(version))
    except (CheckpointMissing, CheckpointError) as err:
        # The promote step then puts the challenger in its place (pipeline.round.promote).
        return fresh(f"champion v{version} cannot be read ({err})")
    same = (champion.params.model == params.model
            and champion.params.image_size == params.image_size
            and list(champion.classes) == list(project.classes))
    if not same:
        return fresh(f"champion v{version} is {champion.params.model} at image size "
                     f"{champion.params.image_size} over {len(champion.classes)} classes; this "
                     f"round trains {params.model} at {params.image_size} over "
                     f"{len(project.classes)}")
    return Start(champion, f"champion v{version}", lineage)


def off_limits(project: Project, keys) -> set[str]:
    """The ``keys`` no model may have trained on now: held-out picks and their near-duplicates
    (what ``labeled_sets`` keeps out of training)."""
    store = project.store
    holdout = set(picks(store, holdout=True))
    keys = set(keys)
    # kept_apart's own rule, so that the two cannot drift apart.
    kept = kept_apart(dict.fromkeys(keys, ""), holdout, store.near_duplicate_groups())
    return (keys & holdout) | (keys - kept.keys())


def write_lineage(project: Project, snapshot: str, start: Start, keys) -> None:
    """Record the keys the checkpoint ``snapshot``'s whole chain trained on."""
    write_text_atomic(project.models_dir / f"{snapshot}.lineage.json",
                      json.dumps(sorted(start.lineage | set(keys))))


def _lineage(project: Project, info) -> frozenset[str] | None:
    """The keys the registered version ``info``'s chain trained on; None: not known."""
    if not info.snapshot:
        return None
    chain = project.models_dir / f"{info.snapshot}.lineage.json"
    if chain.exists():
        return frozenset(json.loads(chain.read_text()))
    if info.tags.get("start", "").startswith("champion"):
        return None  # continued from another, whose images were not written down with it
    # Trained before lineages were kept, from its start weights: on its own labels only.
    own = project.models_dir / f"{info.snapshot}.labels.json"
    return frozenset(json.loads(own.read_text())) if own.exists() else None
