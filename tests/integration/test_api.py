"""Driving the loop from Python (``pipeline.api``) against the real Label Studio: the README's
example runs as written, the lock keeps the command line out while a script holds the project,
and the export and certificate are the command line's."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from labeling.studio.opinions import human_answers
from pipeline.api import Loop
from pipeline.datasets import read_labels_csv
from pipeline.export import ExportError
from pipeline.project.lock import LockHeld
from pipeline.round import session as studio_session
from tests.integration.cli import REPO, cli_env, labelloop

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def readme_python() -> str:
    """The README's one Python example."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "the README should hold one Python example"
    return blocks[0]


def test_the_readme_example_runs_a_round_and_a_script_keeps_the_command_line_out(
        digits_project, studio_server, small_digits, tmp_path, monkeypatch):
    folder = digits_project("api", folder=tmp_path / "api")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", studio_server.token)
    monkeypatch.chdir(folder)
    exec(compile(readme_python(), "README.md", "exec"), {})  # noqa: S102 - our own README

    # The example's round pushed the first batch to Label Studio, and its export wrote the
    # labels there are (none yet) with a certificate saying so.
    assert (folder / "labels.certificate.json").is_file()
    first = json.loads((folder / "labels.certificate.json").read_text())
    assert first["delivered"] == 0 and first["exported_rows"] == 0
    env = cli_env(LABEL_STUDIO_API_KEY=studio_server.token)
    status = json.loads(labelloop("status", "--json", "-c", str(folder), env=env).stdout)
    assert status["pool"]["pending_in_label_studio"] == 80  # [loop] initial_random

    truth = {str(path.resolve()): label
             for path, label in read_labels_csv(small_digits / "labels.csv")}
    with Loop(folder) as loop:
        # While the script holds the project, a round from the command line is refused,
        # naming the script, and changes nothing; a second script is refused too.
        refused = labelloop("round", "-c", str(folder), env=env)
        assert refused.returncode == 3, refused.stderr
        assert "a Python script (pipeline.api.Loop)" in refused.stderr
        with pytest.raises(LockHeld), Loop(folder):
            pass
        answered = studio_session.simulate_annotators(loop.project, truth, noise=0.0, seed=1)
        assert answered == 80
        record = loop.round()  # syncs the 80 answers, trains the first model
        assert record["id"] == 2 and "train" in record["stats"]["done"]
        with pytest.raises(ExportError, match="exists"):
            loop.export("labels.csv")  # the example's file: not replaced without force
        done = loop.export(tmp_path / "out" / "labels.csv")
        assert human_answers(loop.project.store) == 80

    # The lock is given back at the end of the block: the command line reads the same figures.
    status = json.loads(labelloop("status", "--json", "-c", str(folder), env=env).stdout)
    cert = json.loads(done.certificate_file.read_text())
    assert cert == done.certificate
    assert cert["human"] == status["certificate"]["human"] == done.report.by_source["human"]
    with open(done.report.out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == cert["delivered"] == cert["exported_rows"]
    assert all(r["label"] == truth[str(Path(r["path"]).resolve())] for r in rows
               if r["source"] == "human")
