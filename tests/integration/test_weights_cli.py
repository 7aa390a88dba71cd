"""`[training] weights` as a user's own file, through the real command line: a relative path is
the config folder's, whatever the current folder; a missing or damaged file stops the round's
training with one line naming it, no traceback, no label lost, while commands that need no
model (status) still run."""

from __future__ import annotations

import torch

from pipeline.project.project import open_project
from pipeline.project.workspace import find_config
from tests.integration.cli import REPO, cli_env, labelloop
from training.models import get_model


def _human_labels(folder) -> int:
    project = open_project(find_config(folder))
    try:
        return len(project.store.current_classes(sources=("human",)))
    finally:
        project.close()


def test_a_users_weights_file_missing_damaged_then_right(studio_server, digits_project,
                                                         small_digits, tmp_path, ledger):
    folder = digits_project("weights-file", folder=tmp_path / "project")
    config = folder / "labelloop.toml"
    text = config.read_text(encoding="utf-8")
    assert text.count("[training]\n") == 1
    config.write_text(text.replace("[training]\n", '[training]\nweights = "mine.pt"\n'),
                      encoding="utf-8")
    assert REPO != folder  # the command runs from elsewhere: the path is the config folder's
    env, c = cli_env(LABEL_STUDIO_API_KEY=studio_server.token), ("--config", str(folder))

    status = labelloop("status", *c, env=env)  # needs no model: the file is not looked for
    assert status.returncode == 0, status.stderr[-2000:]
    first = labelloop("round", "--quiet", *c, env=env)  # nothing to train yet: random picks
    assert first.returncode == 0, first.stderr[-2000:]
    answered = labelloop("annotate-sim", "--truth", str(small_digits / "labels.csv"), *c,
                         env=env)
    assert answered.returncode == 0, answered.stderr[-2000:]

    missing = labelloop("round", "--quiet", *c, env=env)
    out = missing.stdout + missing.stderr
    assert missing.returncode == 2 and "Traceback" not in out, out[-3000:]
    assert f"[training] weights: weights file not found: {folder / 'mine.pt'}" in out
    ledger.bad_input("[training] weights naming a missing file",
                     outcome=f"refused: {missing.stderr.strip()}")

    good = tmp_path / "good.pt"
    torch.save(get_model("small_cnn", 10, seed=1).state_dict(), good)
    data = good.read_bytes()
    (folder / "mine.pt").write_bytes(data[: len(data) // 2])  # a copy cut short
    broken = labelloop("round", "--quiet", *c, env=env)
    out = broken.stdout + broken.stderr
    assert broken.returncode == 2 and "Traceback" not in out, out[-3000:]
    assert "[training] weights: cannot read weights file" in out
    assert str(folder / "mine.pt") in out and "weights_only=False" not in out
    ledger.bad_input("[training] weights: a state-dict file cut short",
                     outcome=f"refused: {broken.stderr.strip()}")
    before = _human_labels(folder)  # the sync step, before training, brought the answers in
    assert before > 0

    (folder / "mine.pt").write_bytes(data)
    fixed = labelloop("round", "--quiet", *c, env=env)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert _human_labels(folder) == before
    models = labelloop("models", "list", *c, env=env)
    assert models.returncode == 0 and "v1" in models.stdout
