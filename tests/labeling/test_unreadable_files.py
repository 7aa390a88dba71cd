"""Files a user can break by hand - the embedded server's key file, a truth file for the
simulated annotators - that are a folder or not text: one clear error naming the file."""

from __future__ import annotations

import pytest

from labeling.studio import server
from labeling.studio.annotator_sim import load_truth
from labeling.studio.errors import StudioError


def test_a_token_file_that_is_a_folder_or_not_text_is_a_clear_error(tmp_path):
    token = server.ServerFiles(tmp_path.resolve()).token_file
    token.mkdir()
    with pytest.raises(StudioError, match=r"token cannot be read \(Is a directory\); restore"):
        server.read_token(tmp_path)
    token.rmdir()
    token.write_bytes(b"\xff\xfebad")
    with pytest.raises(StudioError, match=r"token cannot be read \(not UTF-8 text\)"):
        server.read_token(tmp_path)
    token.write_text("a-key-123456\n")
    assert server.read_token(tmp_path) == "a-key-123456"


def test_a_truth_file_that_is_a_folder_or_not_text_is_a_clear_error(tmp_path):
    folder = tmp_path / "truth.csv"
    folder.mkdir()
    with pytest.raises(StudioError, match=r"truth file .* cannot be read \(Is a directory\)"):
        load_truth(folder)
    binary = tmp_path / "truth2.csv"
    binary.write_bytes(b"path,label\n\xff\xfe,1\n")
    with pytest.raises(StudioError, match="is not UTF-8 text"):
        load_truth(binary)


def test_a_truth_file_naming_a_deleted_image_answers_the_rest_when_asked_to(tmp_path):
    # A user deleted one image of a pool: annotate-sim refused the whole answer key.
    (tmp_path / "a.png").write_bytes(b"first image")
    (tmp_path / "truth.csv").write_text("path,label\na.png,cat\ngone.png,dog\n")
    with pytest.raises(StudioError, match="names gone.png, which does not exist"):
        load_truth(tmp_path / "truth.csv")
    gone: list[str] = []
    truth = load_truth(tmp_path / "truth.csv", gone)
    assert list(truth.values()) == ["cat"] and gone == [str(tmp_path / "gone.png")]
