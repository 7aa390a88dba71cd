"""``labelloop report``: a clear message before any round, placeholders for plots without data,
and a page that a real headless browser renders with every plot decoded."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from labeling.selections import picks
from labeling.store import NewLabel
from pipeline.cli.app import app
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.report import write_report
from pipeline.round import accept as accept_step
from pipeline.round import predict as predict_step
from pipeline.round import promote as promote_step
from pipeline.round import select as select_step
from pipeline.round import train as train_step
from pipeline.round.monitor import monitor_round

REPO = Path(__file__).resolve().parents[2]
CLASSES = [str(d) for d in range(10)]
PLOTS = {"learning_curve", "auto_label", "confidence", "confusion", "correction", "drift"}
# Small enough to train in a few seconds on two cores; good enough to tell digits apart.

def digits(n: int):
    data = load_digits()
    images = np.round(data.images * (255 / 16)).astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))[:n]
    return images[order], data.target[order]


def one_round(proj, truth, rng) -> None:
    """Label pending picks as a sync would (pre-annotation shown, 10% of people's answers
    wrong), then the round's model, pool and monitor steps."""
    paths = {i.key: i.path for i in proj.store.items()}
    human = proj.store.current_labels(sources=("human",))
    earlier = [r["stats"]["predict"] for r in proj.store.rounds()
               if "file" in r["stats"].get("predict", {})]
    guess = {}
    if earlier:
        keys, probs, _ = predict_step.load_predictions(earlier[-1]["file"])
        guess = {k: CLASSES[int(p.argmax())] for k, p in zip(keys, probs, strict=True)}
    labels = []
    for key in (k for k in picks(proj.store) if k not in human):
        label = truth[str(Path(paths[key]).resolve())]
        if rng.random() < 0.1:
            label = CLASSES[(int(label) + 1) % 10]
        shown = guess.get(key)
        labels.append(NewLabel(key, label, "human", extra={
            "lead_time": float(rng.uniform(1, 8)), "predicted": shown,
            "changed_prediction": None if shown is None else label != shown}))
    proj.store.add_labels(labels)
    rid = proj.store.start_round()
    stats = {"train": train_step.train_challenger(proj, rid, progress=False)}
    stats["promote"] = promote_step.decide_promotion(proj, stats["train"].get("version"))
    stats["predict"] = predict_step.predict_pool(proj, rid, progress=False)
    stats["accept"] = accept_step.auto_accept(proj, rid, stats["predict"])
    stats["select"] = select_step.select_batch(proj, rid, stats["predict"])
    stats["monitor"] = monitor_round(proj, rid, stats)
    proj.store.finish_round(rid, stats)


def test_report_before_any_round_says_so(tmp_path):
    (tmp_path / "images").mkdir()
    config_path = init_project(tmp_path, images=tmp_path / "images", classes=["a", "b"])
    result = CliRunner().invoke(app, ["report", "--config", str(config_path),
                                      "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "no rounds yet" in result.output and "labelloop round" in result.output
    assert not (tmp_path / "r.html").exists()


def test_plots_without_data_say_so(tmp_path, quick_project):
    images, labels = digits(300)
    proj, truth, _ = quick_project(tmp_path, images, labels, "report-test")
    try:
        one_round(proj, truth, np.random.default_rng(0))  # cold start: no model yet
        page, pngs = write_report(proj, tmp_path / "out" / "r.html")
    finally:
        proj.close()
    text = page.read_text()
    assert {p.stem for p in pngs} == PLOTS
    assert all(p.parent == tmp_path / "out" / "r_files" for p in pngs)
    # Written in the image folder, the plots go to a hidden folder, which ingest skips (they
    # joined the pool as images to label).
    proj = open_project(find_config(tmp_path))
    try:
        _, inside = write_report(proj, tmp_path / "images" / "r.html")
        assert {p.parent.name for p in inside} == {".r_files"}
        assert ingest_folder(proj.store, tmp_path / "images").added == []
    finally:
        proj.close()
    assert text.count("<img ") == len(PLOTS)
    assert text.count("class='note'>no data yet") == 5
    assert "no drift test yet: no champion yet" in text
    assert all(Image.open(p).size == (800, 420) for p in pngs)


def test_the_report_carries_the_certificate_and_the_annotators(tmp_path, quick_project):
    images, labels = digits(300)
    proj, truth, config_path = quick_project(tmp_path, images, labels, "report-cert")
    try:
        one_round(proj, truth, np.random.default_rng(0))
        page, _ = write_report(proj, tmp_path / "out" / "r.html")
    finally:
        proj.close()
    # A folder it cannot write to: one line, not a traceback.
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(app, ["report", "--config", str(config_path),
                                      "--out", str(tmp_path / "a-file" / "r.html")])
    assert result.exit_code == 2 and result.output.startswith("error: cannot write the report")
    text = page.read_text()
    # The round's answers are not synced yet: nothing delivered, and no bound claimed on it.
    assert ("<p id='certificate'>0 labels delivered (0 by people, 0 by the machine), 300 "
            "unlabeled; no error bound yet (no label is delivered)") in text
    assert "<h2>Annotators</h2><p>none yet: each person's error rate is measured on items " \
           "that two or more people answered</p>" in text


@pytest.mark.slow
def test_report_renders_every_plot_in_headless_chromium(tmp_path, quick_project, write_pngs):
    images, labels = digits(1100)
    proj, truth, config_path = quick_project(tmp_path, images[:800], labels[:800], "report-test")
    rng = np.random.default_rng(0)
    try:
        one_round(proj, truth, rng)
        one_round(proj, truth, rng)
        truth.update(write_pngs(proj.config.images_dir, 255 - images[800:],
                                labels[800:], "inv"))
        ingest_folder(proj.store, proj.config.images_dir)
        one_round(proj, truth, rng)
        registry = proj.registry
        newest = registry.versions()[-1].version
        if registry.champion().version != newest:
            registry.promote(newest, reason="test: newest model")
        registry.rollback(reason="test: roll back")
    finally:
        proj.close()
    out = tmp_path / "site" / "report.html"
    result = CliRunner().invoke(app, ["report", "--config", str(config_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "class='note'" not in text  # every plot has data
    assert {p.stem for p in (tmp_path / "site" / "report_files").glob("*.png")} == PLOTS
    assert "rollback" in text and "test: roll back" in text and "drift in 300 new" in text

    chromium = _chromium()
    # The page plus a probe that titles it with the count of images that decoded.
    probe = out.with_name("probe.html")
    probe.write_text(text.replace("</body>", "<script>window.addEventListener('load', () => "
                                  "{document.title = 'decoded:' + [...document.images].filter("
                                  "i => i.complete && i.naturalWidth > 0).length;});</script>"
                                  "</body>"))
    dom = _browse(chromium, tmp_path, "--virtual-time-budget=10000", "--dump-dom",
                  probe.as_uri())
    assert re.search(r"<title>decoded:(\d+)</title>", dom).group(1) == str(len(PLOTS))
    shot = tmp_path / "shot.png"
    _browse(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000",
            out.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # matplotlib's first colour (C0, #1f77b4) drawn by the plots, not by the page's CSS.
    c0 = np.all(np.abs(pixels - [31, 119, 180]) < 30, axis=-1)
    assert c0.sum() > 500


def _chromium() -> str:
    """Chromium from PATH, installed by scripts/setup_browser.sh if missing; skip otherwise."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    setup = subprocess.run(["bash", str(REPO / "scripts/setup_browser.sh")],
                           capture_output=True, text=True, timeout=600)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed and scripts/setup_browser.sh could not install "
                    f"it: {(setup.stderr or setup.stdout).strip()[-500:]}")
    return found


def _browse(chromium: str, tmp_path: Path, *args: str) -> str:
    profile = tmp_path / "chromium-profile"
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout
