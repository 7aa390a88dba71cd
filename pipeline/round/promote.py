"""The promote step: evaluate the challenger against the champion and promote it if better.

Promotion rule: the challenger replaces the champion only if, on the same random held-out
human-labeled evaluation set, its accuracy is higher, or equal with a lower log-loss. Accuracy
on random human labels is what users notice; comparing both models on the same items removes
the luck of the draw between evaluation sets; log-loss breaks ties because a model trained on
more labels that is as accurate but better calibrated gives better thresholds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.project.project import Project
from pipeline.round.labeled import class_indices, labeled_sets, paths_of
from pipeline.round.predict import predict_files
from training.checkpoint import load_checkpoint
from training.evaluate import evaluate


def score_on_eval(project: Project, version: str, eval_set: dict[str, str]) -> dict:
    """Accuracy and log-loss of a registered version on the evaluation set."""
    keys = sorted(eval_set)
    model = load_checkpoint(project.registry.checkpoint_path(version))
    probs = predict_files(project, model, paths_of(project, keys), keys, embeddings=False,
                          progress=False, keep_pixels=True).probs
    y = class_indices(project, eval_set, keys)
    report = evaluate(probs, y, project.classes)
    log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return {"accuracy": report.accuracy, "log_loss": log_loss, "n": len(keys)}


def decide_promotion(project: Project, challenger: str | None) -> dict:
    """Apply the promotion rule (module docstring) and promote if it says so."""
    return promote_if_better(
        project, challenger, labeled_sets(project)[1], score=score_on_eval,
        rank=lambda r: (r["accuracy"], -r["log_loss"]),
        describe=lambda r: f"accuracy {r['accuracy']:.4f} (log-loss {r['log_loss']:.4f})",
        unit="held-out human labels")


def promote_if_better(project: Project, challenger: str | None, eval_set: dict, *,
                      score: Callable[[Project, str, dict], dict],
                      rank: Callable[[dict], tuple], describe: Callable[[dict], str],
                      unit: str) -> dict:
    """Promote ``challenger`` if ``rank`` of its ``score`` on ``eval_set`` beats the
    champion's on the same items (the first model is promoted as it is); the record says
    why. Every task type's promotion goes through here."""
    registry = project.registry
    champion = registry.champion()
    if challenger is None:
        return {"promoted": False, "reason": "no challenger this round",
                "champion": champion.version if champion else None}
    if champion is not None and champion.version == challenger:
        return {"promoted": False, "reason": "already champion", "champion": challenger}
    if champion is None:
        registry.promote(challenger, reason="first model")
        return {"promoted": True, "reason": "first model", "champion": challenger}
    if not eval_set:
        return {"promoted": False, "reason": "no held-out human labels to compare on",
                "champion": champion.version}
    new = score(project, challenger, eval_set)
    old = score(project, champion.version, eval_set)
    better = rank(new) > rank(old)
    reason = (f"v{challenger} {describe(new)} vs champion v{champion.version} "
              f"{describe(old)} on {len(eval_set)} {unit}")
    if better:
        registry.promote(challenger, reason=reason)
    return {"promoted": better, "reason": reason,
            "champion": challenger if better else champion.version,
            "challenger_score": new, "champion_score": old}
