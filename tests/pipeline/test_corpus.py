"""The bad-input corpus (tests/data/make_corpus.py): every case gets exactly its outcome."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.ingest import ingest_folder
from training.images import open_image

# tests/ is not a package (pytest runs with --import-mode=importlib), so load the script by path.
_SPEC = importlib.util.spec_from_file_location(
    "make_corpus", Path(__file__).parents[1] / "data" / "make_corpus.py")
make_corpus = importlib.util.module_from_spec(_SPEC)
sys.modules["make_corpus"] = make_corpus  # dataclasses look their module up there
_SPEC.loader.exec_module(make_corpus)


def shown(path: str) -> str:
    """A path as ingest reports and stores it: bytes that are not UTF-8 written as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@pytest.fixture
def corpus(tmp_path):
    cases = make_corpus.make_corpus(tmp_path / "corpus")
    root = (tmp_path / "corpus/images").resolve()
    yield root, cases
    # Give the locked file and folder their permissions back so tmp_path can be removed.
    for path in [root / "perm/locked.png", root / "perm/private"]:
        path.chmod(0o755)


def observed_outcomes(report, store) -> dict[str, tuple[str, str]]:
    """Shown path -> (outcome, reason) for everything the ingest reported."""
    seen: dict[str, tuple[str, str]] = {}
    rows = ([(i.path, "item", "") for i in store.items()]
            + [(p, "quarantined", r) for p, r in report.quarantined]
            + [(p, "ignored", "") for p in report.ignored]
            + [(p, "link not followed", "") for p in report.folder_links]
            + [(p, "unreadable folder", r) for p, r in report.unreadable_dirs])
    for path, outcome, reason in rows:
        assert path not in seen, f"{path} has two outcomes: {seen[path]} and {outcome}"
        seen[path] = (outcome, reason)
    return seen


def test_every_case_of_the_corpus_gets_its_outcome(store, corpus, ledger):
    root, cases = corpus
    assert {c.outcome for c in cases} <= set(make_corpus.OUTCOMES)
    report = ingest_folder(store, root)
    observed = observed_outcomes(report, store)
    items = {i.path: i for i in store.items()}
    recorded = {q.path: q.reason for q in store.quarantined()}

    for case in cases:
        path = shown(str(root / case.name))
        outcome, reason = observed.get(path, ("not reported", ""))
        ledger.bad_input(case.what, outcome=f"{outcome}: {reason}" if reason else outcome)
        assert outcome == case.outcome, (case, reason)
        assert case.reason in reason, (case, reason)
        if outcome == "item":
            with Image.open(path) as raw:
                assert raw.mode == case.mode, case  # the corpus made what it says it did
            decoded = open_image(path)
            assert (decoded.size, decoded.mode) == (case.size, "RGB"), case
            assert open_image(path, channels=1).mode == "L"
            assert (items[path].width, items[path].height) == case.size
        if outcome == "quarantined":
            assert recorded[path] == reason  # in the store, not only in the report

    # Nothing reported that is not a case, and nothing read from outside the image folder.
    assert set(observed) == {shown(str(root / c.name)) for c in cases}
    assert report.duplicates == [] and report.released == []
    assert all(Path(p).is_relative_to(root) for p in items)


def test_a_second_ingest_adds_nothing_and_quarantines_nothing_new(store, corpus):
    root, _ = corpus
    first = ingest_folder(store, root)
    before = store.quarantined()
    again = ingest_folder(store, root)
    assert again.added == [] and again.released == []
    assert sorted(again.already_present) == sorted(i.path for i in first.added)
    assert sorted(again.quarantined) == sorted(first.quarantined)
    assert [(q.path, q.reason) for q in store.quarantined()] == [
        (q.path, q.reason) for q in before]


def test_cli_ingests_the_corpus_and_lists_the_quarantined_files(tmp_path, corpus):
    root, cases = corpus
    db = tmp_path / "cli.db"
    result = CliRunner().invoke(app, ["ingest", str(root), "--store", str(db)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    for case in cases:
        if case.outcome == "quarantined":
            assert shown(case.name) in result.output, case
    assert "link points outside the folder read" in result.output
    assert "links/up" in result.output  # the folder link is listed as not followed
