"""Object detection: a detector trained for a minute finds pasted digits, predictions keep input
order and stay inside the image, bad targets are refused naming the image, checkpoints round-trip
exactly, and mAP on hand-made boxes is what COCO says it is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from training.checkpoint import CheckpointError, save_checkpoint
from training.detection import models as detector_models
from training.detection.checkpoint import load_detector, save_detector
from training.detection.metrics import detection_map
from training.detection.models import (
    detector_entry,
    get_detector,
    list_detectors,
    register_detector,
)
from training.detection.params import DetectParams
from training.detection.predict import predict_detector
from training.detection.train import DetectorStalledError, train_detector
from training.images import ImageError
from training.models import WeightsUnavailableError

from .detection_data import CLASSES, make_scenes, write_pngs


def _scenes(mnist, tmp_path_factory, name, n, *, seed, first, **kw):
    digits, labels = mnist
    images, targets = make_scenes(digits[first : first + 2000], labels[first : first + 2000], n,
                                  seed=seed, **kw)
    return write_pngs(images, tmp_path_factory.mktemp(name)), targets


@pytest.fixture(scope="session")
def train_set(mnist, tmp_path_factory):
    """60 small canvases, 1-3 digits each, a tenth with none: (paths, targets)."""
    return _scenes(mnist, tmp_path_factory, "det_train", 60, seed=1, first=0,
                   canvas=(96, 112), per_image=(1, 3), empty_fraction=0.1)


@pytest.fixture(scope="session")
def held_out(mnist, tmp_path_factory):
    """40 canvases of other MNIST digits, for judging the trained detector."""
    return _scenes(mnist, tmp_path_factory, "det_test", 40, seed=2, first=3000,
                   canvas=(96, 112), per_image=(1, 3))


@pytest.fixture(scope="session")
def quick_detector(train_set):
    """A detector after a few optimiser steps: untrained, but every part of it runs."""
    paths, targets = train_set
    params = DetectParams(epochs=1, min_steps=3, batch_size=8)
    return train_detector(paths[:24], targets[:24], CLASSES, params, seed=0)


@pytest.fixture(scope="session")
def trained_detector(train_set):
    """The default detector (ImageNet backbone) trained 40 epochs on the 60 images (about 15 s)."""
    paths, targets = train_set
    return train_detector(paths, targets, CLASSES, DetectParams(epochs=40, batch_size=8), seed=0)


@pytest.mark.slow
def test_a_briefly_trained_detector_finds_the_digits(trained_detector, held_out):
    paths, targets = held_out
    scores = detection_map(predict_detector(trained_detector, paths), targets, CLASSES)
    # Measured 0.72 (mAP 0.49) on these 40 images: 60 training images is a very small set
    # (500 reach 0.95, scripts/bench_detect.py).
    assert scores["map_50"] > 0.5, scores
    assert trained_detector.metrics["n_images"] == 60


def test_predictions_come_in_input_order_with_boxes_inside_the_image(quick_detector, train_set,
                                                                    held_out):
    paths = [held_out[0][0], train_set[0][5], held_out[0][0], held_out[0][7]]
    out = predict_detector(quick_detector, paths, batch_size=3, score_floor=0.0)
    assert len(out) == 4
    assert out[0]["boxes"].shape[0] > 0  # an untrained detector still proposes boxes
    for pred, path in zip(out, paths, strict=True):
        from PIL import Image

        with Image.open(path) as img:
            assert (pred["width"], pred["height"]) == img.size
        boxes = pred["boxes"]
        assert boxes.dtype == np.float32 and pred["scores"].dtype == np.float32
        assert len(boxes) == len(pred["labels"]) == len(pred["scores"])
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= pred["width"]).all() and (boxes[:, 3] <= pred["height"]).all()
        assert set(pred["labels"]) <= set(CLASSES)
        assert (np.diff(pred["scores"]) <= 0).all()  # best first
    assert np.array_equal(out[0]["boxes"], out[2]["boxes"])  # same file, same answer
    alone = predict_detector(quick_detector, [paths[3]], score_floor=0.0)[0]
    assert np.allclose(alone["boxes"], out[3]["boxes"], atol=1e-3)


def test_the_score_floor_drops_weak_boxes(quick_detector, held_out):
    paths = held_out[0][:4]
    low = predict_detector(quick_detector, paths, score_floor=0.0)
    high = predict_detector(quick_detector, paths, score_floor=0.5)
    assert all(len(h["scores"]) <= len(lo["scores"]) for h, lo in zip(high, low, strict=True))
    assert all((h["scores"] >= 0.5).all() for h in high)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"boxes": [[10, 10, 30, 30]], "labels": ["cat"]}, r"unknown class 'cat'; valid classes"),
        ({"boxes": [[10, 10, 30, 130]], "labels": ["3"]}, r"lies outside the \d+x\d+ image"),
        ({"boxes": [[-1, 10, 30, 30]], "labels": ["3"]}, r"lies outside"),
        ({"boxes": [[10, 10, 10, 30]], "labels": ["3"]}, r"has no area"),
        ({"boxes": [[10, 10, 30, 30]], "labels": ["3", "4"]}, r"1 boxes but 2 labels"),
        ({"boxes": [[10, 10, 30]], "labels": ["3"]}, r"shape \[M, 4\]"),
        ({"boxes": [[10, 10, 30, 30]]}, r"'boxes' and 'labels'"),
    ],
)
def test_bad_targets_are_refused_naming_the_image(train_set, target, message, ledger):
    paths, targets = train_set
    bad = list(targets[:3])
    bad[1] = target
    with pytest.raises(ValueError, match=message) as err:
        train_detector(paths[:3], bad, CLASSES, DetectParams(min_steps=1, epochs=1))
    assert str(paths[1]) in str(err.value)
    ledger.bad_input(f"detection target {target}", outcome=f"refused: {err.value}")


def test_a_count_mismatch_and_an_unreadable_image_are_refused(train_set, tmp_path):
    paths, targets = train_set
    with pytest.raises(ValueError, match="3 images but 2 targets"):
        train_detector(paths[:3], targets[:2], CLASSES)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageError, match="broken.png"):
        train_detector([paths[0], broken], targets[:2], CLASSES, DetectParams(min_steps=1))


def test_prediction_names_an_unreadable_file(quick_detector, held_out, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    with pytest.raises(ImageError, match="broken.png.*empty file"):
        predict_detector(quick_detector, [held_out[0][0], broken])


def test_a_checkpoint_round_trips_to_identical_predictions(quick_detector, held_out, tmp_path):
    path = tmp_path / "detector.pt"
    save_detector(quick_detector, path)
    loaded = load_detector(path)
    paths = held_out[0][:6]
    before = predict_detector(quick_detector, paths, score_floor=0.0)
    after = predict_detector(loaded, paths, score_floor=0.0)
    for b, a in zip(before, after, strict=True):
        assert np.array_equal(a["boxes"], b["boxes"]) and a["labels"] == b["labels"]
        assert np.array_equal(a["scores"], b["scores"])
    assert loaded.classes == quick_detector.classes
    assert loaded.params == quick_detector.params
    assert loaded.metrics == quick_detector.metrics
    assert loaded.epoch == quick_detector.epoch
    assert torch.load(path, weights_only=True)["classes"] == CLASSES  # plain data only


def test_training_resumes_from_a_loaded_checkpoint(quick_detector, train_set, tmp_path):
    path = tmp_path / "detector.pt"
    save_detector(quick_detector, path)
    loaded = load_detector(path)
    paths, targets = train_set
    params = dataclasses.replace(loaded.params, min_steps=1, epochs=1,
                                 weight_decay=loaded.params.weight_decay * 3)
    resumed = train_detector(paths[:8], targets[:8], CLASSES, params, warm_start=loaded)
    assert resumed.epoch == loaded.epoch + 1
    assert resumed.metrics["weights"] == "warm start"
    # The loaded optimiser state brings the old run's settings; this run's weight decay wins.
    assert {g["weight_decay"] for g in resumed.optimizer_state["param_groups"]} == {
        params.weight_decay}
    with pytest.raises(ValueError, match="same model and classes"):
        train_detector(paths[:8], targets[:8], CLASSES[::-1], params, warm_start=loaded)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_corrupt_checkpoint_is_a_clear_error(quick_detector, tmp_path, damage, ledger):
    path = tmp_path / "detector.pt"
    save_detector(quick_detector, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"garbage" * 100)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*detector\.pt") as err:
        load_detector(path)
    ledger.bad_input(f"detector checkpoint ({damage})", outcome=f"refused: {err.value}")


def test_a_classifier_checkpoint_is_not_taken_for_a_detector(mnist_model, tmp_path):
    path = tmp_path / "classifier.pt"
    save_checkpoint(mnist_model, path)
    with pytest.raises(CheckpointError, match="format 'labelloop.detector'.*labelloop.checkpoint"):
        load_detector(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(tmp_path / "absent.pt")


def test_training_is_reproducible_from_the_seed(train_set):
    paths, targets = train_set
    params = DetectParams(epochs=1, min_steps=2, batch_size=4, weights=None)
    a = train_detector(paths[:8], targets[:8], CLASSES, params, seed=3)
    b = train_detector(paths[:8], targets[:8], CLASSES, params, seed=3)
    state_a, state_b = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a.metrics["weights"] == "backbone random init"


def _matched_locations(name: str, box: list[float]) -> int:
    """How many locations detector ``name``'s training matches to ``box`` (xyxy) on a 64-px
    image: what FCOS's own matcher decides (a location strictly inside the box and within 1.5
    anchor sizes of its centre), captured from a training step."""
    model = get_detector(name, 10, weights=None).train()
    real, matched = model.head.compute_loss, []

    def compute_loss(targets, head_outputs, anchors, matched_idxs):
        matched.extend(matched_idxs)
        return real(targets, head_outputs, anchors, matched_idxs)

    model.head.compute_loss = compute_loss
    target = {"boxes": torch.tensor([box]), "labels": torch.tensor([1])}
    model([torch.zeros(3, 64, 64)], [target])
    return int((matched[0] >= 0).sum())


def test_the_default_detector_can_find_a_small_thin_digit():
    # A "1" 14 px tall is about 5 px wide. Between two stride-8 locations (8 and 16) it holds
    # none, so the stride-8 FCOS never learns nor finds it; the default's stride-4 grid does.
    thin_one = [9.0, 9.0, 14.0, 23.0]
    assert _matched_locations("fcos_mobilenet_v2", thin_one) == 0
    assert _matched_locations(DetectParams().model, thin_one) > 0
    # A usual digit is matched on both grids.
    assert _matched_locations("fcos_mobilenet_v2", [20.0, 16.0, 40.0, 44.0]) > 0


def test_the_stride_8_detector_keeps_its_parameter_names():
    # Checkpoints of fcos_mobilenet_v2 made before the stride-4 detector came must still load:
    # the stride-4 map is added under a name of its own, the stride-8 ones are unchanged.
    state = get_detector("fcos_mobilenet_v2", 10, weights=None).state_dict()
    assert {n.split(".")[1] for n in state if n.startswith("backbone.")} == {
        "stride8", "stride16", "fpn"}
    assert state["backbone.stride8.0.0.weight"].shape == (32, 3, 3, 3)  # MobileNetV2's stem


def test_detectors_are_chosen_by_name():
    assert {"fcos_mobilenet_v2", "fasterrcnn_mobilenet_v2"} <= set(list_detectors())
    with pytest.raises(ValueError, match="unknown detector 'yolo'; valid detectors: fasterrcnn"):
        get_detector("yolo", 3)
    with pytest.raises(ValueError, match="already registered"):
        register_detector("fcos_mobilenet_v2", lambda *a: None, first_label=0,
                          set_score_floor=lambda m, f: None)
    with pytest.raises(ValueError, match=r"weights='IMAGENET1K_V2' \(need weights 'imagenet'"):
        DetectParams(weights="IMAGENET1K_V2")


def test_missing_imagenet_weights_are_a_clear_error_not_random_init(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty hub cache
    with pytest.raises(WeightsUnavailableError, match="mobilenet_v2-b0353104.pth"):
        get_detector("fcos_mobilenet_v2", 10, weights="imagenet", allow_download=False)


def test_the_faster_rcnn_detector_trains_and_predicts(train_set):
    paths, targets = train_set
    params = DetectParams(model="fasterrcnn_mobilenet_v2", epochs=1, min_steps=2, batch_size=4)
    model = train_detector(paths[:8], targets[:8], CLASSES, params)
    out = predict_detector(model, paths[:2], score_floor=0.0)
    assert [p["width"] for p in out] == [p["width"] for p in predict_detector(model, paths[:2])]
    assert all(set(p["labels"]) <= set(CLASSES) for p in out)


def _dead_head(monkeypatch, name: str, dead_builds: int) -> None:
    """Register, for one test, FCOS as the zoo builds it with the box head dead in the first
    ``dead_builds`` builds: its ReLU's input pushed far below zero, the state a too-large step
    leaves it in (seen at lr 0.005 on a loop's 99 images), where every box has zero size and no
    gradient gets through."""
    fcos = detector_entry(DetectParams().model)
    builds = []

    def build(num_classes, features, image_size):
        model = fcos.build(num_classes, features, image_size)
        builds.append(name)
        if len(builds) <= dead_builds:
            with torch.no_grad():
                model.head.regression_head.bbox_reg.bias.fill_(-1e3)
        return model

    monkeypatch.setitem(detector_models._REGISTRY, name, dataclasses.replace(fcos, build=build))


def test_a_detector_that_ends_unable_to_learn_restarts_at_half_the_rate_and_learns(
        train_set, monkeypatch):
    _dead_head(monkeypatch, "fcos_dead_head_once", dead_builds=1)
    paths, targets = train_set
    params = DetectParams(model="fcos_dead_head_once", epochs=1, min_steps=40, batch_size=8,
                          lr=4e-3)
    model = train_detector(paths[:24], targets[:24], CLASSES, params, seed=0)
    assert model.metrics["restarts"] == 1
    assert model.metrics["lr"] == 2e-3
    assert model.metrics["steps"] == 40  # the restart ran its whole schedule
    assert model.metrics["train_loss"]["bbox_regression"] < 0.99
    out = predict_detector(model, paths[:4], score_floor=0.0)
    sizes = np.concatenate([p["boxes"][:, 2:] - p["boxes"][:, :2] for p in out])
    assert len(sizes) and (sizes > 0).all(), "boxes of zero size: the box head is still dead"


def _scripted(verdict):
    """A stalled check that answers ``verdict(i)`` for its i-th call, whatever the losses."""
    calls = []

    def stalled(losses):
        calls.append(losses)
        return verdict(len(calls) - 1)

    return stalled


def test_only_the_end_of_a_run_decides_a_restart(train_set, monkeypatch):
    fcos = detector_entry(DetectParams().model)
    paths, targets = train_set
    params = DetectParams(epochs=1, min_steps=40, batch_size=8, lr=4e-3)
    # Stalled for the first 25 of 40 steps, then learning: not restarted.
    monkeypatch.setitem(detector_models._REGISTRY, "fcos_early",
                        dataclasses.replace(fcos, stalled=_scripted(lambda i: i < 25)))
    early = train_detector(paths[:24], targets[:24], CLASSES,
                           dataclasses.replace(params, model="fcos_early"), seed=0)
    assert early.metrics["restarts"] == 0
    # Learning for 10 steps, then stalled to the end, with steps that say nothing (None, a
    # batch without objects) among them: restarted; the restart (calls 40 on) learns.
    late = _scripted(lambda i: i < 40 and i >= 10 and (None if i % 5 == 0 else True))
    monkeypatch.setitem(detector_models._REGISTRY, "fcos_late",
                        dataclasses.replace(fcos, stalled=late))
    model = train_detector(paths[:24], targets[:24], CLASSES,
                           dataclasses.replace(params, model="fcos_late"), seed=0)
    assert (model.metrics["restarts"], model.metrics["lr"]) == (1, 2e-3)


def test_a_healthy_detector_is_not_restarted(train_set):
    paths, targets = train_set
    params = DetectParams(epochs=1, min_steps=40, batch_size=8, lr=4e-3)
    model = train_detector(paths[:24], targets[:24], CLASSES, params, seed=0)
    assert (model.metrics["restarts"], model.metrics["lr"]) == (0, 4e-3)


def test_a_detector_that_never_learns_is_a_clear_error_not_a_model(train_set, monkeypatch):
    _dead_head(monkeypatch, "fcos_dead_head_always", dead_builds=99)
    paths, targets = train_set
    params = DetectParams(model="fcos_dead_head_always", epochs=1, min_steps=30,
                          batch_size=8, lr=4e-3)
    with pytest.raises(DetectorStalledError,
                       match=r"fcos_dead_head_always ended training unable to learn .* at lr "
                             r"0\.004, 0\.002, 0\.001; try another \[training\] lr or seed"):
        train_detector(paths[:16], targets[:16], CLASSES, params, seed=0)


# mAP on hand-made boxes: what COCO's evaluation gives, through torchmetrics.
TRUTH = [
    {"boxes": np.array([[10, 10, 30, 40], [50, 50, 70, 90]], np.float32), "labels": ["3", "7"]},
    {"boxes": np.array([[5, 5, 25, 25]], np.float32), "labels": ["3"]},
]


def _as_predictions(targets, labels=None):
    return [{"boxes": t["boxes"], "labels": labels[i] if labels else t["labels"],
             "scores": np.full(len(t["labels"]), 0.9, np.float32)} for i, t in enumerate(targets)]


def test_perfect_boxes_score_one():
    scores = detection_map(_as_predictions(TRUTH), TRUTH, CLASSES)
    assert scores["map_50"] == pytest.approx(1.0) and scores["map"] == pytest.approx(1.0)
    assert scores["ap_50"]["3"] == pytest.approx(1.0) and scores["ap_50"]["7"] == pytest.approx(1.0)
    assert scores["ap_50"]["0"] is None  # no ground truth of class 0: undefined, not 0
    assert scores["n_truth"] == 3


def test_a_box_of_the_wrong_class_scores_lower():
    wrong = _as_predictions(TRUTH, labels=[["3", "1"], ["3"]])  # the 7 called a 1
    scores = detection_map(wrong, TRUTH, CLASSES)
    assert scores["ap_50"]["3"] == pytest.approx(1.0)
    assert scores["ap_50"]["7"] == pytest.approx(0.0)
    assert scores["map_50"] < 1.0
    nothing = [{"boxes": np.zeros((0, 4)), "labels": [], "scores": np.zeros(0)}] * 2
    assert detection_map(nothing, TRUTH, CLASSES)["map_50"] == pytest.approx(0.0)


def test_a_loose_box_counts_at_iou_half_but_not_at_stricter_thresholds():
    loose = [dict(p) for p in _as_predictions(TRUTH)]
    loose[1]["boxes"] = np.array([[5, 5, 25, 31]], np.float32)  # IoU 20*20 / (20*26) = 0.77
    scores = detection_map(loose, TRUTH, CLASSES)
    assert scores["map_50"] == pytest.approx(1.0)
    assert scores["map"] < 1.0


def test_map_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        detection_map(_as_predictions(TRUTH), TRUTH[:1], CLASSES)
    with pytest.raises(ValueError, match="unknown class 'x'"):
        detection_map(_as_predictions(TRUTH, labels=[["3", "x"], ["3"]]), TRUTH, CLASSES)


def test_a_chosen_image_size_still_gives_boxes_in_the_files_pixels(train_set):
    paths, targets = train_set
    params = DetectParams(image_size=48, epochs=1, min_steps=2, batch_size=4)
    model = train_detector(paths[:8], targets[:8], CLASSES, params)
    out = predict_detector(model, paths[:2], score_floor=0.0)
    assert len(out[0]["boxes"]) > 0
    for pred in out:
        assert (pred["boxes"][:, 2] <= pred["width"]).all()
        assert (pred["boxes"][:, 3] <= pred["height"]).all()
        assert pred["boxes"][:, 2].max() > 48 or pred["boxes"][:, 3].max() > 48  # scaled back


def test_an_image_longer_than_max_side_is_scaled_down_and_its_boxes_mapped_back():
    # A batch is padded to its largest height and width: a 2000 x 20 image beside a 16 x 3000
    # one made a 3000 x 2000 batch that took 22 GB before the kernel killed the round.
    from training.detection.models import MAX_SIDE

    model = get_detector(DetectParams().model, 10, weights=None)
    wide, tall = torch.rand(3, 20, 2000), torch.rand(3, 3000, 16)
    boxes = torch.tensor([[100.0, 2.0, 300.0, 18.0]])
    batch, targets = model.transform([wide, tall], [{"boxes": boxes, "labels": torch.tensor([1])},
                                                   {"boxes": boxes[:0], "labels": torch.tensor(
                                                       [], dtype=torch.int64)}])
    assert max(batch.tensors.shape[-2:]) <= MAX_SIDE
    assert batch.image_sizes == [(10, MAX_SIDE), (MAX_SIDE, 5)]
    assert torch.allclose(targets[0]["boxes"], boxes * torch.tensor([MAX_SIDE / 2000, 0.5] * 2))
    # The detector's boxes, found on the scaled image, come back in the original's pixels.
    model.eval()
    [back] = model.transform.postprocess([{"boxes": torch.tensor([[512.0, 5.0, 1024.0, 10.0]])}],
                                         batch.image_sizes[:1], [(20, 2000)])
    assert torch.allclose(back["boxes"], torch.tensor([[1000.0, 10.0, 2000.0, 20.0]]))
    small = torch.rand(3, 120, 160)  # a small image keeps its size
    assert model.transform([small])[0].image_sizes == [(120, 160)]
