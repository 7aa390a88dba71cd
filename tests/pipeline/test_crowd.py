"""The crowd's settings and how hard each image is for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.crowd import item_difficulty
from pipeline.project.config import ConfigError, load_config, render_config
from pipeline.quickstart import use_crowd

GOOD = render_config("demo", ["cat", "dog"], Path("images"))


@pytest.mark.parametrize("new, named", [
    ("reference_error = 0.7", "reference_error must be in [0, 0.5)"),
    ('reference_error = "guessed"', "loop.reference_error"),
    ("double_check = 2.0", "loop.double_check"),
    ('target = "everything"', "loop.target"),
    ("annotators = -1", "studio.annotators"),
])
def test_bad_crowd_and_bound_settings_name_the_key(tmp_path, new, named, ledger):
    key = new.split(" = ")[0]
    old = next(line for line in GOOD.splitlines() if line.startswith(f"{key} = "))
    path = tmp_path / "labelloop.toml"
    path.write_text(GOOD.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    ledger.bad_input(f"config {new}", outcome=f"refused: {str(err.value).splitlines()[0]}")
    assert named in str(err.value)


def test_the_quickstart_crowd_measures_the_peoples_error_and_keeps_user_edits(tmp_path):
    path = tmp_path / "labelloop.toml"
    path.write_text(GOOD.replace("double_check = 0.0", "double_check = 0.5"), encoding="utf-8")
    use_crowd(path, 3)
    config = load_config(path)
    assert (config.studio.annotators, config.loop.reference_error) == (3, "measured")
    assert config.loop.audit_fraction == 0.5  # a larger random validation stream for a crowd
    assert config.loop.preannotate_min_confidence == 0.9  # no uncertain guess to anchor on
    assert config.loop.double_check == 0.5  # the user's own value stays


def test_an_image_between_two_classes_is_hard_and_confused_with_the_other(tmp_path):
    paths, truth = {}, {}
    rng = np.random.default_rng(0)
    for i in range(40):
        cls = "cat" if i % 2 else "dog"
        base = 40 if cls == "cat" else 200
        shade = 120 if i == 1 else base  # item 1: a cat halfway to the dogs
        pixels = np.clip(rng.normal(shade, 5, (8, 8)), 0, 255).astype(np.uint8)
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels, mode="L").save(path)
        paths[f"k{i}"], truth[f"k{i}"] = path, cls
    hardness, confusable = item_difficulty(paths, truth, ("cat", "dog"))
    assert np.mean(list(hardness.values())) == pytest.approx(1.0)
    assert max(hardness, key=hardness.get) == "k1"
    assert confusable["k1"] == "dog" and confusable["k0"] == "cat"


def test_the_human_labels_error_can_be_set_apart_from_rho(tmp_path):
    # rho (how often a person repeats the model's wrong label) is far below how often a person
    # errs at all; the certificate's allowance for people is the second.
    path = tmp_path / "labelloop.toml"
    text = GOOD.replace("reference_error = 0.0", "reference_error = 0.005")
    path.write_text(text, encoding="utf-8")
    assert load_config(path).loop.people_error == 0.005  # unset: rho's number, as before
    path.write_text(text.replace("# human_error: unset by default", "human_error = 0.05"),
                    encoding="utf-8")
    loop = load_config(path).loop
    assert (loop.reference_error, loop.people_error) == (0.005, 0.05)
    path.write_text(text.replace("# human_error: unset by default", "human_error = 0.5"),
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"human_error must be in \[0, 0.5\)"):
        load_config(path)


def test_an_answer_key_whose_files_are_all_gone_is_an_error_before_any_account_is_made(
        tmp_path):
    # A review: a truth.csv copied away from its images printed "answered 0" and exited 0
    # (it had refused the whole file for one missing image before).
    from typer.testing import CliRunner

    from pipeline.cli.app import app
    from pipeline.project.workspace import init_project

    (tmp_path / "imgs").mkdir()
    config = init_project(tmp_path, images=tmp_path / "imgs", classes=["cat", "dog"])
    (tmp_path / "truth.csv").write_text("path,label\na.png,cat\nb.png,dog\n")
    result = CliRunner().invoke(app, ["annotate-sim", "--truth", str(tmp_path / "truth.csv"),
                                      "--crowd", "2", "--config", str(config)])
    assert result.exit_code != 0
    assert "none of the 2 file(s) named in truth.csv exists" in result.output
