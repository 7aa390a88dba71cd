"""``labelloop serve`` on a detection project, without Label Studio (the real server's calls are
in ``tests/integration/test_detection_serve.py``): a task gets what a round's push would show
for its image, and a task push sends blind gets nothing."""

from __future__ import annotations

from labeling.selections import Pick, record_picks
from pipeline.backend import guesses
from pipeline.backend.served import Loaded
from pipeline.backend.service import Backend
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.quickstart import change_defaults
from pipeline.round.detection import predict as det_predict
from pipeline.task_images import TaskImage
from tests.pipeline.test_detection_steps import canvases, project  # noqa: F401 - fixtures

# Image confidences (the least sure keep-or-drop decision): 0.55, 0.51, 0.7, 1.0, 0.51.
SCORES = ([0.9, 0.62, 0.45], [0.51, 0.3], [0.9, 0.7, 0.2], [], [0.97, 0.55, 0.49, 0.08])


class PoolImages:
    """The backend's task images for pushed tasks: the pool's file of the task's item."""

    def __init__(self, proj) -> None:
        self.paths = {i.key: i.path for i in proj.store.items()}

    def resolve_all(self, tasks):
        return [TaskImage(path=self.paths[t["data"]["item_key"]], key=t["data"]["item_key"])
                for t in tasks]


def detector_output(truth, paths_to_keys):
    """A fake detector: for each image, its first true boxes with the scores of ``SCORES``
    (kept, dropped and in between), the rest unscored clutter."""
    def predict(model, paths, *, progress=False):
        out = []
        for path in paths:
            key = paths_to_keys[path]
            scores = SCORES[sorted(truth).index(key) % len(SCORES)]
            base = truth[key]["boxes"] or [{"label": "1", "x": 1.0, "y": 1.0, "w": 5.0,
                                            "h": 5.0}]
            boxes = [dict(base[i % len(base)], score=s) for i, s in enumerate(scores)]
            out.append({"width": truth[key]["width"], "height": truth[key]["height"],
                        "boxes": boxes})
        return out
    return predict


def serve(proj, keys, fake, monkeypatch) -> list[dict]:
    """What the backend answers for the pushed tasks of ``keys``, the champion faked."""
    monkeypatch.setattr(guesses, "predict_values", fake)
    backend = Backend(proj, studio_project_id=7, images=PoolImages(proj), rounds=None)
    monkeypatch.setattr(backend.champion, "current", lambda: Loaded("1", "v1", None))
    tasks = [{"id": i, "data": {"item_key": k}} for i, k in enumerate(keys)]
    return backend.predict({"tasks": tasks, "project": "7.1700000000"})["results"]


def test_a_served_task_gets_what_push_shows_and_a_blind_one_nothing(
        project, monkeypatch, tmp_path):  # noqa: F811 - the fixture imported above
    proj, truth = project
    keys = sorted(truth)[:5]
    held = keys[1]
    record_picks(proj.store, [Pick(held, "random", holdout=True)], round_id=None)
    paths = {i.key: i.path for i in proj.store.items()}
    fake = detector_output(truth, {p: k for k, p in paths.items()})
    # The round's predict step, on the fake detector: what push pre-annotates.
    monkeypatch.setattr(det_predict, "champion_model_path", lambda p: ("1", "model.det.pt"))
    monkeypatch.setattr(det_predict, "load_detector", lambda ckpt: None)
    monkeypatch.setattr(det_predict, "predict_values", fake)
    predicted = det_predict.predict_pool(proj, 1, progress=False)
    shown = det_predict.pre_annotations(proj, predicted)

    results = serve(proj, keys, fake, monkeypatch)
    assert len(results) == len(keys) and {r["model_version"] for r in results} == {"v1"}
    for key, result in zip(keys, results, strict=True):
        if key == held:  # a held-out reference goes blind, as push sends it
            assert result["result"] == [] and result["score"] == 0.0
            continue
        value, confidence = shown[key]
        assert result["result"] == proj.task.labels.prediction_result(value)
        assert result["score"] == confidence
    kept = [len(shown[k][0]["boxes"]) for k in keys]
    assert kept == [2, 1, 2, 0, 2]  # scored 0.5 or more
    assert shown[keys[0]][1] == 0.55  # its least sure decision: dropping the 0.45

    # With guesses under 0.6 hidden (a crowd's setting), push and serve both leave them out.
    change_defaults(tmp_path / "labelloop.toml", (("preannotate_min_confidence = 0.0",
                                                   "preannotate_min_confidence = 0.6"),))
    unsure = open_project(find_config(tmp_path))
    try:
        results = serve(unsure, keys, fake, monkeypatch)
    finally:
        unsure.close()
    shows = [bool(r["result"]) for r in results]
    assert shows == [False, False, True, False, False]  # keys[3]: sure, but no box to show
