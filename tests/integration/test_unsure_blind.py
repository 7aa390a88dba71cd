"""Tasks the champion is unsure of go to people without its guess
(``[loop] preannotate_min_confidence``): a person shown an uncertain guess may take it as it
is, and uncertain items are what people are sent."""

from __future__ import annotations

import os

import pytest

from labeling.selections import picks
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from pipeline.round.predict import load_predictions
from pipeline.round.session import session
from pipeline.round.steps import run_round
from tests.integration.test_loop import answer, make_project

pytestmark = [pytest.mark.integration]

FLOOR = 0.9


def test_only_confident_guesses_are_shown(studio_server, digits_export, tmp_path):
    first, truth, env = make_project(studio_server, digits_export, tmp_path,
                                     f"unsure-{os.getpid()}")
    run_round(first)  # the random cold start: no model, no guess on any task
    answer(first, truth, seed=0)
    first.close()
    config = tmp_path / "labelloop.toml"  # [loop] is its last section
    # Random picks, so that the round sends items the model is sure of and items it is not.
    config.write_text(config.read_text() + f"preannotate_min_confidence = {FLOOR}\n"
                      'strategy = "random"\n', encoding="utf-8")
    project = open_project(find_config(config), env=env)
    try:
        second = run_round(project)
        keys, probs, _ = load_predictions(second["stats"]["predict"]["file"])
        confidence = dict(zip(keys, probs.max(axis=1).tolist(), strict=True))
        studio, sp = session(project)
        shown = {item_key_of(t): bool(t.get("predictions")) for t in iter_tasks(
            studio, sp.id, include="id,data,predictions", all_fields=True)}
        chosen = [k for k, p in picks(project.store).items()
                  if p.reason == "strategy" and k in confidence]
        sure = [k for k in chosen if confidence[k] >= FLOOR]
        unsure = [k for k in chosen if confidence[k] < FLOOR]
        assert sure and unsure, (len(sure), len(unsure))  # the test needs both kinds
        assert all(shown[k] for k in sure)
        assert not any(shown[k] for k in unsure)
        assert second["stats"]["push"]["blind"] >= len(unsure)
    finally:
        project.close()
