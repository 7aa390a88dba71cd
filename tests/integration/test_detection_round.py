"""The detection loop end to end against the real Label Studio: mnist-detection canvases,
a simulated person drawing boxes, rounds that train, promote, predict, accept, select, push
and sync; a round killed after a step resumes to the uninterrupted state."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from labeling.selections import picks
from labeling.studio.box_annotator_sim import load_box_truth, simulate_box_annotations
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.detection_dataset import export_mnist_detection
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round import session as studio_session
from pipeline.round.steps import run_round
from tests.integration.test_loop import KILLER
from training.detection.params import DetectParams

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
_n = itertools.count()


@pytest.fixture(scope="session")
def canvases(studio_server) -> Path:
    """60 mnist-detection canvases inside the server's local-files document root."""
    out = studio_server.images_dir.parent / "det-canvases"
    export_mnist_detection(out, n_images=60)
    return out


def make_project(studio_server, canvases, folder: Path, name: str, *, min_steps: int = 10):
    folder.mkdir(parents=True, exist_ok=True)
    classes = ", ".join(f'"{d}"' for d in range(10))
    (folder / "labelloop.toml").write_text(textwrap.dedent(f"""\
        workspace = "ws"
        [project]
        name = "{name}"
        classes = [{classes}]
        images = "{canvases / 'images'}"
        task = "detection"
        [studio]
        url = "{studio_server.url}"
        local_files_root = "{studio_server.images_dir.parent}"
        [training]
        model = "{DetectParams().model}"
        weights = "imagenet"
        epochs = 2
        min_steps = {min_steps}
        batch_size = 8
        [loop]
        strategy = "least_confident"
        target_precision = 0.8
        second_opinions = false
        batch_size = 10
        initial_random = 30
        min_new_labels = 5
        min_validation_points = 5
        """), encoding="utf-8")
    env = {"LABEL_STUDIO_API_KEY": studio_server.token}
    project = open_project(find_config(folder), env=env)
    ingest_folder(project.store, project.config.images_dir)
    return project, env


def answer(project, truth, seed):
    studio, sp = studio_session.session(project)
    return simulate_box_annotations(studio, sp, truth, fault_rate=0.0, skip=0.0, seed=seed)


def state(project) -> dict:
    studio, sp = studio_session.session(project)
    keys = Counter(item_key_of(t) for t in iter_tasks(studio, sp.id, include="id,data",
                                                       all_fields=True))
    labels = project.store.current_labels()
    return {"tasks_per_item": set(keys.values()), "task_items": set(keys),
            "labels": {k: (v.label, v.source, str(v.value)) for k, v in labels.items()},
            "picks": {k: (p.reason, p.holdout) for k, p in picks(project.store).items()},
            "versions": len(project.registry.versions()),
            "champion": project.registry.champion().version,
            "rounds": [r["status"] for r in project.store.rounds()]}


def test_detection_rounds_with_a_simulated_person(studio_server, canvases, tmp_path):
    project, _ = make_project(studio_server, canvases, tmp_path, f"det-e2e-{next(_n)}")
    truth = load_box_truth(canvases / "boxes.json")
    first = run_round(project)["stats"]
    assert first["push"]["pushed"] == 30 and first["train"]["trained"] is False
    assert answer(project, truth, 0).answered == 30
    second = run_round(project)["stats"]
    assert second["sync"]["labels"] == 30
    assert second["train"]["trained"] and second["promote"]["promoted"]
    assert second["predict"]["predicted"] == 30 + 15  # the pool, and the held-out half
    cut = second["accept"]["image_threshold"]
    # Tested on the held-out images people boxed, but those in the part that chooses models.
    assert cut["n"] + second["accept"]["held_out_choosing"] == 15 and cut["reason"]
    assert 0 < cut["n"] < 15
    assert second["select"]["picked"] == 10 and second["select"]["audit"] == 3
    assert second["push"]["pushed"] == 10
    assert second["push"]["model_version"] == f"v{project.registry.champion().version}"
    # The new tasks carry the champion's boxes as a pre-annotation (audits go blind).
    studio, sp = studio_session.session(project)
    made = picks(project.store)
    shown = [t for t in iter_tasks(studio, sp.id, all_fields=True)
             if made.get(item_key_of(t)) is not None
             and made[item_key_of(t)].reason == "strategy"]
    assert shown and all(t["predictions"] for t in shown)
    region = next((r for t in shown for r in t["predictions"][0]["result"]), None)
    assert region is None or region["type"] == "rectanglelabels"
    # People's boxes are what the store holds, as drawn.
    human = project.store.current_labels(sources=("human",))
    some = next(k for k in human if truth[k].boxes)
    assert [b["label"] for b in human[some].value["boxes"]] == [b["label"] for b in
                                                                 truth[some].boxes]
    assert state(project)["tasks_per_item"] == {1}
    project.close()




def test_a_detection_round_killed_after_a_step_resumes_to_the_same_state(
        studio_server, canvases, tmp_path, ledger):
    truth = load_box_truth(canvases / "boxes.json")
    ref, _ = make_project(studio_server, canvases, tmp_path / "ref", f"det-ref-{next(_n)}")
    for n in range(2):
        run_round(ref)
        answer(ref, truth, n)
    run_round(ref)
    expected = state(ref)
    ref.close()

    crash, env = make_project(studio_server, canvases, tmp_path / "crash",
                              f"det-crash-{next(_n)}")
    child_env = {**os.environ, "LS_KEY": env["LABEL_STUDIO_API_KEY"]}
    for n, step in enumerate(("push", "train", "accept")):
        proc = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path / "crash"), step],
                              cwd=REPO, env=child_env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        run_round(crash)  # resumes the killed round
        if n < 2:
            answer(crash, truth, n)
    got = state(crash)
    crash.close()
    for step in ("push", "train", "accept"):
        ledger.fault(f"SIGKILL right after detection step {step}",
                     outcome="next run resumed to the uninterrupted state",
                     lost_labels=0 if got["labels"] == expected["labels"] else 1,
                     duplicate_tasks=0 if got["tasks_per_item"] == {1} else 1)
    assert got["tasks_per_item"] == {1}
    for key in ("labels", "picks", "versions", "champion", "rounds"):
        assert got[key] == expected[key], key


def test_a_box_crowd_is_double_checked_at_random_and_its_error_measured(
        studio_server, canvases, tmp_path):
    """Three real accounts drawing boxes with faults: the random double and blind checks get
    a second person (blind ones without the model's boxes), and the accept step measures the
    people's error on them instead of assuming it."""
    from sqlalchemy import select

    from labeling.schema import Item, SecondOpinion
    from labeling.studio.accounts import add_annotator, annotator_key, list_annotators
    from labeling.studio.box_annotator_sim import simulate_box_crowd
    from labeling.studio.connection import connect
    from labeling.studio.opinions import current_votes
    from pipeline.round.blind import checked
    from pipeline.round.sync import sync

    first, env = make_project(studio_server, canvases, tmp_path, f"det-crowd-{next(_n)}")
    first.close()
    config = tmp_path / "labelloop.toml"  # [loop] is its last section
    config.write_text(config.read_text().replace("second_opinions = false",
                                                 "second_opinions = true")
                      + 'double_check = 0.4\nblind_check = 0.6\n'
                        'reference_error = "measured"\n', encoding="utf-8")
    project = open_project(find_config(config), env=env)
    truth = load_box_truth(canvases / "boxes.json")
    studio, sp = studio_session.session(project)
    for n in range(3):
        add_annotator(studio, project.config.studio_dir, f"b{os.getpid()}x{next(_n)}n{n}")
    people = [(a.user_id, connect(studio.url, annotator_key(a), timeout=120))
              for a in list_annotators(project.config.studio_dir)]
    try:
        for n in range(3):
            run_round(project)
            for p in range(3):  # a sync between passes asks the second people
                simulate_box_crowd(people, sp, truth, fault_rate=0.3, skip=0.0,
                                   seed=10 * n + p)
                if p < 2:
                    sync(project)
        last = run_round(project)["stats"]
        store = project.store
        with store.transaction() as s:
            asked = s.execute(select(Item.key, SecondOpinion.reason)
                              .join(Item, Item.id == SecondOpinion.item_id)).all()
        made = picks(store)
        double, blind = checked(project, made)
        random_checks = {k for k, why in asked if why == "random double check"}
        assert random_checks and random_checks <= double | blind
        # Every random check a person answered got a second person, and was not asked twice.
        votes = {k: len(v) for k, v in current_votes(store, sp.id).items()}
        assert all(votes.get(k, 0) >= 2 for k in random_checks)
        # Blind checks carry no pre-annotation; strategy picks of later rounds do.
        shown = {item_key_of(t): bool(t.get("predictions")) for t in iter_tasks(
            studio, sp.id, include="id,data,predictions", all_fields=True)}
        assert not any(shown[k] for k in blind if k in shown)
        later = [k for k, p in made.items() if p.round_id and p.round_id > 1
                 and p.reason == "strategy" and k not in blind and k in shown]
        assert later and all(shown[k] for k in later)
        accept = last["accept"]
        people_error = accept["human_error"]
        assert "double-checked" in people_error["how"] and people_error["n_items"] >= 1
        assert people_error["n_events"] >= 1  # the crowd's faults show in what is measured
        assert 0 < people_error["rate_ub"] <= 1
        rho = accept["reference"]
        assert "blind-checked" in rho["how"] and rho["n_items"] >= 1, rho
        assert accept["certificate"]["human_error_ub"] == people_error["rate_ub"]
    finally:
        project.close()
