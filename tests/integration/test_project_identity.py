"""The Label Studio project a labelloop project's tasks are in stays its project: renamed in
Label Studio, a round stops and names the new title (found by title alone, a second project
was made and every waiting item sent again, the answers in the first never read); deleted, a
round stops once, says so, and the next makes a new project. And `studio connect` says what is
wrong with the backend's URL or a backend that is not running."""

from __future__ import annotations

import itertools
import socket

import pytest
from typer.testing import CliRunner

from labeling.selections import Pick, record_picks
from labeling.studio.errors import ProjectMismatch, StudioError
from labeling.studio.ml_backend import connect_backend
from labeling.studio.project import find_projects
from labeling.studio.remote import item_key_of, iter_tasks
from pipeline.cli.app import app
from pipeline.round import push as push_step
from pipeline.round.session import session
from tests.integration.test_loop import make_project

pytestmark = [pytest.mark.integration]
_n = itertools.count()


def _fresh_session(project):
    project.studio = None  # as the next command would open it
    return session(project)


def test_a_renamed_or_deleted_project_stops_the_round_and_nothing_is_sent_twice(
        studio_server, digits_export, tmp_path):
    name = f"identity-{next(_n)}-{tmp_path.name[-10:]}"
    project, _, _ = make_project(studio_server, digits_export, tmp_path, name)
    try:
        store = project.store
        keys = [i.key for i in store.items()][:3]
        record_picks(store, [Pick(k, "random") for k in keys], round_id=None)
        assert push_step.push(project, store.start_round(), {})["pushed"] == 3
        studio, sp = session(project)
        with studio.errors("renaming"):
            studio.client.projects.update(id=sp.id, title=f"{name} (team)")
        with pytest.raises(ProjectMismatch) as renamed:
            _fresh_session(project)
        assert (f"are in project {sp.id} of the Label Studio at {studio.url}, which is titled "
                f"'{name} (team)' now, not '{name}'") in str(renamed.value)
        assert "set [studio] project_title" in str(renamed.value)
        assert "`labelloop studio new-project`" in str(renamed.value)
        assert find_projects(studio, name) == []  # none made under the old title
        with studio.errors("renaming back"):
            studio.client.projects.update(id=sp.id, title=name)
        assert _fresh_session(project)[1].id == sp.id
        assert push_step.push(project, store.start_round(), {})["pushed"] == 0

        # Renamed, and the user would rather go on in a new project under the old title.
        with studio.errors("renaming"):
            studio.client.projects.update(id=sp.id, title=f"{name} (old)")
        left = CliRunner().invoke(app, ["studio", "new-project", "-c", str(tmp_path)])
        assert left.exit_code == 0, left.output
        assert f"left Label Studio project(s) {sp.id} (3 task(s))" in left.output
        _, second = _fresh_session(project)
        assert second.id != sp.id and second.title == name
        assert push_step.push(project, store.start_round(), {})["pushed"] == 3

        with studio.errors("deleting"):
            studio.client.projects.delete(id=second.id)
        with pytest.raises(StudioError,
                           match=rf"project\(s\) {second.id} at .* are gone \(deleted\?"):
            _fresh_session(project)
        assert store.tasks(second.id) == {}
        assert len(store.tasks(second.id, include_deleted=True)) == 3
        _, third = _fresh_session(project)  # the next run goes on, in a new project
        assert third.id not in (sp.id, second.id)
        assert push_step.push(project, store.start_round(), {})["pushed"] == 3
        on_server = [item_key_of(t) for t in iter_tasks(studio, third.id, include="id,data")]
        assert sorted(on_server) == sorted(keys)
    finally:
        project.close()


def test_connect_says_what_is_wrong_with_the_url_or_a_backend_not_running(
        studio_server, digits_export, tmp_path):
    project, _, _ = make_project(studio_server, digits_export, tmp_path,
                                 f"connect-{next(_n)}-{tmp_path.name[-10:]}")
    try:
        studio, sp = session(project)
        with pytest.raises(StudioError, match="must be http://HOST:PORT"):
            connect_backend(studio, sp.id, "not a url", title="labelloop")
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(StudioError) as down:
            connect_backend(studio, sp.id, f"http://127.0.0.1:{port}", title="labelloop")
        assert "start `labelloop serve` first" in str(down.value)
        assert "<a href" not in str(down.value)
    finally:
        project.close()
