"""``labelloop annotate-sim --crowd N``: the simulated crowd from the command line, through
real annotator accounts on a real Label Studio."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from labeling.studio.accounts import add_annotator, annotator_key, list_annotators
from labeling.studio.connection import connect
from labeling.studio.opinions import current_votes
from labeling.tasks.classification import choice_result
from pipeline.cli.app import app
from pipeline.crowd import simulated_accounts
from pipeline.round.session import session
from pipeline.round.steps import run_round
from pipeline.round.sync import sync
from pipeline.status import project_status
from tests.integration.test_loop import make_project

pytestmark = [pytest.mark.integration]


def test_annotate_sim_as_a_crowd_answers_through_several_accounts(studio_server,
                                                                   digits_export, tmp_path):
    project, _, env = make_project(studio_server, digits_export, tmp_path,
                                   f"crowd-cli-{tmp_path.name[-10:]}")
    truth = str(digits_export / "labels.csv")
    try:
        pushed = run_round(project)["stats"]["push"]["pushed"]  # the cold start's tasks
        # A real person's account: the simulated crowd never answers in her name.
        studio, sp = session(project)
        alice = add_annotator(studio, project.config.studio_dir, "alice")
        # Two of the crowd's accounts answer one task apart, by hand: with the default
        # reference_error = 0 (people are right), status warns that they are not.
        simulated_accounts(project, 2)
        disputed = next(iter(project.store.tasks(sp.id).values()))
        for account, label in zip(list_annotators(project.config.studio_dir)[1:], "12",
                                  strict=False):
            person = connect(studio.url, annotator_key(account))
            person.client.annotations.create(id=disputed, result=choice_result(label))
        cli = CliRunner()
        refused = cli.invoke(app, ["annotate-sim", "--truth", truth, "--crowd", "3",
                                   "--limit", "5", "-c", str(tmp_path)], env=env)
        assert refused.exit_code == 2 and "--limit is for one annotator" in refused.output
        result = cli.invoke(app, ["annotate-sim", "--truth", truth, "--crowd", "3", "--noise",
                                  "0.1", "--seed", "4", "-c", str(tmp_path)], env=env)
        assert result.exit_code == 0, result.output
        answered = {name: int(n) for name, n in
                    re.findall(r"^(ann\d): answered (\d+) \(\d+ wrong on purpose\)",
                               result.output, re.M)}
        assert sorted(answered) == ["ann1", "ann2", "ann3"]
        total = int(re.search(r"the crowd answered (\d+)", result.output).group(1))
        assert total == sum(answered.values()) >= 0.9 * (pushed - 1)  # 2% skip
        sync(project)
        votes = current_votes(project.store, None)
        people = {p for v in votes.values() for p in v}
        assert len(people) == 3 and alice.email not in people  # ann1-ann3's answers
        shown = project_status(project)
        assert shown["certificate"]["people_disagreed"] >= 1
        assert any("[loop] reference_error = 0 assumes they are right" in w
                   for w in shown["warnings"])
        assert len(votes) >= 0.9 * pushed
    finally:
        project.close()
