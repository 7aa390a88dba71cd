"""Label Studio's "Connect model" on a detection project: the real server asks ``labelloop
serve`` (a child process) about tasks people imported by hand, and stores the champion's boxes
where a pushed task would have them."""

from __future__ import annotations

import httpx
import pytest
from PIL import Image

from labeling.store import file_key
from labeling.studio.box_annotator_sim import load_box_truth
from labeling.tasks.detection import read_boxes
from labeling.tasks.registry import get_task_type
from pipeline.backend.guesses import box_guesses
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round
from pipeline.round.sync import sync
from tests.integration.cli import cli_env, labelloop
from tests.integration.test_detection_round import answer, canvases, make_project  # noqa: F401
from tests.integration.test_serve import Served, _predictions, _retrieve, import_by_hand

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_connected_backend_draws_the_champions_boxes_on_hand_imported_tasks(
        studio_server, canvases, tmp_path):  # noqa: F811 - the fixture imported above
    folder = tmp_path / "boxes"
    # Trained longer than the round tests' champions, which keep no box yet (scores < 0.3).
    project, _ = make_project(studio_server, canvases, folder, f"det-serve-{tmp_path.name}",
                              min_steps=120)
    truth = load_box_truth(canvases / "boxes.json")
    run_round(project)
    answer(project, truth, 0)
    run_round(project)
    champion = project.registry.champion()
    assert champion is not None
    version = f"v{champion.version}"

    env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
    backend = Served(folder, env)
    try:
        backend.start()
        connected = labelloop("studio", "connect", "--config", str(folder), "--url",
                              backend.url, env=env)
        assert connected.returncode == 0 and "connected" in connected.stdout, connected.stderr
        studio, sp = studio_session.session(project)

        # Tasks people import by hand: canvases saved again as JPEG (new files, not pool
        # items), a corrupt file, an unreachable URL.
        hand = studio_server.images_dir.parent / f"hand-det-{tmp_path.name}"
        hand.mkdir()
        names = []
        for src in sorted(canvases.joinpath("images").glob("*.png"))[:3]:
            with Image.open(src) as img:
                img.convert("RGB").save(hand / f"{src.stem}.jpg", quality=90)
            names.append(f"{src.stem}.jpg")
        (hand / "broken.png").write_bytes(b"not an image")
        ids, _ = import_by_hand(studio, sp.id, studio_server, hand, [*names, "broken.png"])

        _retrieve(studio, sp.id, ids)
        preds = {tid: _predictions(studio, tid) for tid in ids}
        assert all(len(p) == 1 for p in preds.values()), preds
        assert {preds[tid][0]["model_version"] for tid in ids[:len(names)]} == {version}
        # Unreadable: not the champion's version, so Label Studio asks again.
        assert {preds[tid][0]["model_version"] for tid in ids[len(names):]} == {
            f"{version}-unread"}

        # Each good image: the boxes the champion keeps for it, where the predict step would
        # put them (read back from Label Studio in pixels), with their scores and the image's
        # confidence as the task's score.
        model = project.task.load(project.registry.checkpoint_path(champion.version))
        paths = [str(hand / n) for n in names]
        expected = box_guesses(project, model, paths, [file_key(p)[0] for p in paths])
        drawn = 0
        for tid, path, (value, confidence) in zip(ids, paths, expected, strict=False):
            served = preds[tid][0]
            assert served["score"] == pytest.approx(confidence, abs=1e-6)
            regions = served["result"]
            with Image.open(path) as img:
                size = img.size
            assert all((r["original_width"], r["original_height"]) == size for r in regions)
            got = read_boxes(regions)
            assert len(got) == len(value["boxes"])
            for box, want, region in zip(got, value["boxes"], regions, strict=True):
                assert box["label"] == want["label"]
                for k in ("x", "y", "w", "h"):
                    assert box[k] == pytest.approx(want[k], abs=1e-3)
                assert region["score"] == pytest.approx(want["score"], abs=1e-6)
            drawn += len(got)
        assert drawn > 0  # the champion found digits: the comparison above saw boxes

        # Unreadable: an empty result with the reason logged; the batch still answered.
        for tid in ids[len(names):]:
            assert preds[tid][0]["result"] == []
        log = backend.log.read_text()
        assert "broken.png" in log and "gone.png" in log

        _retrieve(studio, sp.id, ids)  # the same champion: nothing predicted twice, but
        assert all(len(_predictions(studio, tid)) == 1 for tid in ids[:len(names)])
        # the unreadable ones are asked about again (each time, until their image reads)
        assert all(len(_predictions(studio, tid)) == 2 for tid in ids[len(names):])

        # A person answers a hand-made task with the true boxes: the next sync adopts its image
        # into the pool, and the boxes, in pixels, become the item's label.
        src = sorted(canvases.joinpath("images").glob("*.png"))[0]
        boxes = truth[file_key(src)[0]]
        with Image.open(hand / names[0]) as img:
            width, height = img.size
        value = {"width": width, "height": height, "boxes": boxes.boxes}
        with studio.errors("answering a hand-made task"):
            studio.client.annotations.create(
                id=ids[0], result=project.task.labels.prediction_result(value))
        got = sync(project)
        assert got["adopted_tasks"] == len(names), got  # the answered one, and the others
        key = file_key(hand / names[0])[0]
        label = project.store.current_labels()[key]
        assert label.source == "human"
        assert [(b["label"], round(b["x"], 2), round(b["y"], 2)) for b in label.value["boxes"]] \
            == [(b["label"], round(b["x"], 2), round(b["y"], 2)) for b in boxes.boxes]

        # A one-class labeling config sent to the box backend is refused with why.
        one_class = get_task_type("classification").label_config(project.classes)
        bad = httpx.post(f"{backend.url}/setup", timeout=10,
                         json={"project": f"{sp.id}.1", "schema": one_class})
        assert bad.status_code == 400 and "not labelloop's detection config" in bad.text
        assert httpx.get(f"{backend.url}/health", timeout=2).json()["model_version"] == version
    finally:
        backend.kill()
        project.close()
