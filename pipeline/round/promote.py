"""The promote step: evaluate the challenger against the champion and promote it if better.

Promotion rule: on the same random held-out human-labeled evaluation set, the challenger
replaces the champion unless the champion is right on more of the items where the two differ
beyond chance (one-sided sign test, p < ``SIGN_TEST_ALPHA``). A challenger is trained on every
human label the champion had and more, so it is expected to be better; this checks that it is
not measurably worse. Accuracy on random human labels is what users notice; comparing both
models on the same items removes the luck of the draw between evaluation sets, and a lead of
one item on a small set decides nothing (the photo quickstart once kept a 15-label champion,
0.69 on the test images, over a 66-label challenger, 0.86, because the champion was right on
one more of 36 held-out items).

Which items: the part of the held-out items that chooses (``[loop] selection_share``, a
quarter by default, split by a hash of each item, ``labeling.held_out``); the accept step tests
the champion's thresholds on the rest. Judged on the items that then certify it, a model kept
for doing better there would be certified partly by its luck: with one set for both, the rule
until 2026-12-06 (the better of the two, log-loss breaking ties) let a 95% bound fail in up to
12.6% of simulated runs, this rule in up to 6.1%, a model fixed in advance about 4%; with the
split, every rule is back at a fixed model's rate (``scripts/bench_selection.py``; the
README's "The champion's selection"). This rule is kept on the split for the reason above:
the challenger has more labels, and a lead within chance on a quarter of the items is none.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import binomtest

from pipeline.project.project import Project
from pipeline.registry.mlflow_store import CheckpointMissing
from pipeline.round.labeled import choosing_part, class_indices, labeled_sets, paths_of
from pipeline.round.predict import predict_files
from training.checkpoint import CheckpointError, load_checkpoint
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
    # "_right": which items it got right, for the paired rule; not kept in the round's record.
    return {"accuracy": report.accuracy, "log_loss": log_loss, "n": len(keys),
            "_right": probs.argmax(1) == y}


# The champion's accuracy lead on the items where the two differ counts as real (and keeps it)
# below this one-sided sign-test p-value.
SIGN_TEST_ALPHA = 0.05


def wins_and_losses(new: dict, old: dict) -> tuple[int, int]:
    """(items only the challenger got right, items only the champion got right), from
    ``score_on_eval`` of both on the same items."""
    return (int(np.sum(new["_right"] & ~old["_right"])),
            int(np.sum(old["_right"] & ~new["_right"])))


def paired_rule(new: dict, old: dict) -> tuple[bool, str]:
    """(promote?, why) by the module's rule, from ``score_on_eval`` of both on the same items."""
    won, lost = wins_and_losses(new, old)
    split = f"right on {won} item(s) the champion missed, wrong on {lost} it got right"
    if lost <= won:
        return True, split
    p = binomtest(lost, won + lost, 0.5, alternative="greater").pvalue
    if p < SIGN_TEST_ALPHA:
        return False, f"{split}: the champion's lead is beyond chance (sign test p = {p:.3f})"
    return True, f"{split}: the champion's lead is within chance (sign test p = {p:.3f})"


def checkpoint_problem(project: Project, version: str) -> str | None:
    """Why ``version`` cannot serve as the champion (its checkpoint is gone or cannot be
    loaded as this project's model), or None."""
    try:
        project.task.load(project.registry.checkpoint_path(version))
    except (CheckpointMissing, CheckpointError) as err:
        return str(err)
    return None


def decide_promotion(project: Project, challenger: str | None) -> dict:
    """Apply the promotion rule (module docstring) and promote if it says so, on the held-out
    items that choose (``labeling.held_out``): not those the thresholds are tested on."""
    held_out = labeled_sets(project)[1]
    return promote_if_better(
        project, challenger, choosing_part(project, held_out), held_out=len(held_out),
        score=score_on_eval, judge=paired_rule,
        describe=lambda r: f"accuracy {r['accuracy']:.4f} (log-loss {r['log_loss']:.4f})",
        unit="held-out human labels that choose models (the rest test thresholds)")


def promote_if_better(project: Project, challenger: str | None, eval_set: dict, *,
                      score: Callable[[Project, str, dict], dict],
                      judge: Callable[[dict, dict], tuple[bool, str]],
                      describe: Callable[[dict], str], unit: str, held_out: int) -> dict:
    """Promote ``challenger`` if ``judge(new, old) -> (better, why)`` of its ``score`` and the
    champion's on the same ``eval_set`` items says so (the first model is promoted as it is);
    the record says why. Every task type's promotion goes through here. Score keys starting
    with "_" are not recorded. ``held_out``: how many held-out labels there are in all, for
    the reason when none of them is in ``eval_set`` (the part that chooses)."""
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
        reason = ("no held-out human labels to compare on" if not held_out else
                  f"none of the {held_out} held-out label(s) is in the part that chooses "
                  f"models ([loop] selection_share); the champion stays until one is")
        return {"promoted": False, "reason": reason, "champion": champion.version}
    new = score(project, challenger, eval_set)
    try:
        old = score(project, champion.version, eval_set)
    except (CheckpointMissing, CheckpointError) as err:
        # A champion whose checkpoint is gone or damaged cannot predict a round either: every
        # round stopped here or at the predict step, and its advice was to run the round again.
        # (A registry that cannot be reached now is not this: it stops the round, which
        # resumes.)
        reason = (f"champion v{champion.version} cannot be read ({err}); v{challenger} "
                  f"promoted without a comparison")
        registry.promote(challenger, reason=reason)
        return {"promoted": True, "reason": reason, "champion": challenger}
    better, why = judge(new, old)
    reason = (f"v{challenger} {describe(new)} vs champion v{champion.version} "
              f"{describe(old)} on {len(eval_set)} {unit}" + (f": {why}" if why else ""))
    new, old = ({k: v for k, v in r.items() if not k.startswith("_")} for r in (new, old))
    if better:
        registry.promote(challenger, reason=reason)
    return {"promoted": better, "reason": reason,
            "champion": challenger if better else champion.version,
            "challenger_score": new, "champion_score": old}
