"""Whether the train step trains a challenger, and what names it: the snapshot, a hash of the
training labels and of the training parameters that shape a model. Checkpoints
(``models/<snapshot>.pt``), the registry's versions (one per snapshot) and a crashed round's
resume are keyed by it.

The parameters are part of it because a changed ``[training]`` (another model, weights, mode,
a tuned learning rate) on the same labels is another model: keyed by the labels alone, the
round reused the old checkpoint and said "no new labels". A version rolled back by hand is not
trained and promoted again on the same snapshot: the rollback would be undone by the next
round."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.project.project import Project
from pipeline.round.labeled import snapshot_hash

# Where and how fast a model trains, not what it learns: a change of these is not a new model.
RUNTIME_FIELDS = ("num_workers", "device")
# Between the labels' hash and the parameters' (older versions' snapshots have no such part).
PARAMS_MARK = "-p"


def run_snapshot(labels: dict[str, str], params) -> str:
    """The snapshot of a challenger trained on ``labels`` with ``params`` (a dataclass with
    ``to_dict``); a weights file counts by its bytes, so one replaced at its path counts as
    new."""
    values = {k: v for k, v in params.to_dict().items() if k not in RUNTIME_FIELDS}
    weights = values.get("weights")
    weights_file = isinstance(weights, str) and Path(weights).is_file()
    if weights_file:
        values["weights"] = "a file"  # by its bytes below: a project moved keeps its snapshots
    digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode())
    if weights_file:
        with open(weights, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return f"{snapshot_hash(labels)}{PARAMS_MARK}{digest.hexdigest()[:8]}"


def _params_part(snapshot: str | None) -> str | None:
    if not snapshot or PARAMS_MARK not in snapshot:
        return None  # registered before the parameters were part of it: not known
    return snapshot.partition(PARAMS_MARK)[2]


def changed_labels(project: Project, snapshot: str | None, train_set: dict[str, str]) -> int:
    """How many training labels are new or different since the model trained on ``snapshot``
    (corrections count as much as new labels)."""
    path = project.models_dir / f"{snapshot}.labels.json"
    if snapshot is None or not path.exists():
        return len(train_set)
    before = json.loads(path.read_text())
    return sum(before.get(k) != v for k, v in train_set.items())


def why_not_retrain(project: Project, snapshot: str, train_set: dict[str, str]) -> str | None:
    """Why no challenger is trained on the labels ``train_set`` (snapshot ``snapshot``): the
    champion has them, fewer than ``[loop] min_new_labels`` changed with the same training
    parameters, or the version of this snapshot was rolled back; None: train one."""
    champion = project.registry.champion()
    if champion is None:
        return None
    if champion.snapshot == snapshot:
        return "no new labels or training parameters since the champion"
    if (undone := rolled_back(project, snapshot)) is not None:
        return (f"v{undone}, trained on these labels with these parameters, was set aside (by "
                "`labelloop models rollback`, or the promotion of an older version); "
                "the next challenger waits for new labels or other [training] parameters "
                f"(`labelloop models promote {undone}` to have it back)")
    before, now = _params_part(champion.snapshot), _params_part(snapshot)
    if before is not None and before != now:
        return None  # [training] changed (or tuning's parameters): however few labels did
    new = changed_labels(project, champion.snapshot, train_set)
    wanted = project.config.loop.min_new_labels
    return (f"{new} new training labels < min_new_labels {wanted} (held-out labels do not "
            f"count: no model trains on them)") if new < wanted else None


def rolled_back(project: Project, snapshot: str) -> str | None:
    """The version of ``snapshot`` that was rolled back and that no promotion gave back, if
    there is one: taken the champion from by ``models rollback``, or by a promotion of an
    older version (``models promote VERSION``, the other way back that the CLI offers; the
    loop promotes the newest)."""
    undone: set[str] = set()
    for event in project.registry.history():
        if event.from_version and (event.action == "rollback" or _older(event.to_version,
                                                                         event.from_version)):
            undone.add(event.from_version)
        if event.action == "promote":
            undone.discard(event.to_version)
    if not undone:
        return None
    return next((v.version for v in project.registry.versions()
                 if v.snapshot == snapshot and v.version in undone), None)


def _older(version: str, than: str) -> bool:
    return version.isdigit() and than.isdigit() and int(version) < int(than)
