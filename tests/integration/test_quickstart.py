"""The main job: the quickstart runs rounds against its own embedded Label Studio, prints a
line per round, writes the labeled dataset, and a second run continues without duplicating."""

import json
import re

import pytest

from labeling.studio import server
from pipeline.project.workspace import find_config
from pipeline.quickstart import prepare, run_quickstart
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quickstart_runs_rounds_and_continues(tmp_path, capsys):
    folder = tmp_path / "demo"
    config_path, _, test_rows = prepare(folder)
    assert len(test_rows) == 1000
    text = config_path.read_text()
    config_path.write_text(text.replace("port = 8080", f"port = {free_port()}"))
    config = find_config(config_path)
    try:
        run_quickstart(folder, rounds=2, noise=0.0, seed=0, env={})
        first = capsys.readouterr().out
        # The export holds the last round's answers too (read after it; they were left out).
        exported_first = (folder / "labels.csv").read_text().splitlines()
        run_quickstart(folder, rounds=1, noise=0.0, seed=0, env={})
        second = capsys.readouterr().out
    finally:
        server.stop(config.studio_dir)
    assert re.findall(r"round +(\d+):", first) == ["1", "2"]
    assert re.findall(r"round +(\d+):", second) == ["3"]
    assert "pool: 4000 images (4000 new)" in first and "(0 new)" in second
    assert "answered 100" in first
    # Round 3 synced the 200 answers of rounds 1-2 and trained a champion on them.
    assert re.search(r"round  3: human labels   200 .* champion test accuracy 0\.\d+ \(v\d\)",
                     second)
    assert "Label Studio: http://127.0.0.1:" in second and "MLflow store:" in second
    assert len(exported_first) == 1 + 200 and "(200 items with provenance: 200 human)" in first
    rows = (folder / "labels.csv").read_text().splitlines()
    assert rows[0].startswith("path,label,source")
    assert len(rows) == 1 + 300 and all(",human," in r for r in rows[1:])
    # Its certificate beside it is this export's (a stale one from an earlier export stayed).
    cert = json.loads((folder / "labels.certificate.json").read_text())
    assert cert["exported_rows"] == cert["human"] == 300
    assert f"Certificate ({folder / 'labels.certificate.json'}): 300 labels delivered" in second


def test_quickstart_on_real_photos_uses_the_pretrained_backbone(tmp_path, capsys):
    folder = tmp_path / "photos"
    config_path, truth, test_rows = prepare(folder, "photos")
    text = config_path.read_text()
    assert 'model = "mobilenet_v2"' in text and 'weights = "imagenet"' in text
    assert 'mode = "probe"' in text
    config_path.write_text(text.replace("port = 8080", f"port = {free_port()}"))
    config = find_config(config_path)
    try:
        run_quickstart(folder, rounds=3, noise=0.0, seed=0, env={}, dataset="photos")
    finally:
        server.stop(config.studio_dir)
    out = capsys.readouterr().out
    assert f"pool: {len(truth)} images" in out and len(test_rows) == 36
    # 144 photos cannot certify 98% (149 answers at least): said, not left to guess.
    assert "needs at least 149 random held-out answers without an error" in out
    assert "this pool of 144 images gives at most" in out
    accuracies = [float(a) for a in re.findall(r"champion test accuracy (0\.\d+)", out)]
    # Six classes (chance: 17%); a probe on ImageNet features from about 30 labels.
    assert accuracies and accuracies[-1] >= 0.6, out
