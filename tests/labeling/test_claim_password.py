"""Two `studio add-annotator` of one name at once: both sign up with the password the file
keeps, so the account made is the one the file opens."""

from __future__ import annotations

import stat

from labeling.studio.accounts import claim_password


def test_the_first_password_written_is_the_one_both_adds_use(tmp_path):
    path = tmp_path / "ann.password"
    first = claim_password(path)
    assert path.read_text() == first and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert claim_password(path) == first  # the second add takes the first one's password
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.password"]  # no temp file left


def test_a_file_system_without_hard_links_still_gets_the_password(tmp_path, monkeypatch):
    import os

    def no_links(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "ann.password"
    first = claim_password(path)
    assert path.read_text() == first and claim_password(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
