"""The embedded Label Studio on PostgreSQL (``[studio] database``): a project's `labelloop
studio start` runs it on a database of the session's throwaway server, its password from
``[studio] database_password_file``, and it works through the API as on its own SQLite file."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.engine import make_url

from labeling.studio import server
from labeling.studio.connection import connect
from pipeline.project.config import ConfigError, load_config
from tests.integration.conftest import EXECUTABLE
from tests.ports import free_port
from tests.postgres import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_embedded_server_runs_on_postgresql_with_the_password_from_a_file(
        postgres_server, tmp_path):
    url = postgres_server.create_password_database().replace("postgresql+psycopg", "postgresql")
    (tmp_path / "images").mkdir()
    (tmp_path / "studio-db.pw").write_text(PASSWORD + "\n", encoding="utf-8")
    config_path = tmp_path / "labelloop.toml"
    port = free_port()
    config_path.write_text(f"""workspace = "ws"
[project]
name = "studio-on-postgres"
classes = ["cat", "dog"]
images = "images"
[studio]
port = {port}
executable = "{EXECUTABLE}"
database = "{url}"
database_password_file = "studio-db.pw"
""", encoding="utf-8")
    config = load_config(config_path)
    database = config.database_urls({}).studio
    data_dir = config.studio_dir
    try:
        info = server.start(data_dir, port=port, images_dir=config.images_dir,
                            executable=EXECUTABLE, database=database)
        studio = connect(info.url, info.token_file.read_text().strip())
        created = studio.client.projects.create(title="on postgres", label_config=(
            '<View><Image name="image" value="$image"/><Choices name="choice" toName="image">'
            '<Choice value="cat"/><Choice value="dog"/></Choices></View>'))
        assert [p.title for p in studio.client.projects.list()] == ["on postgres"]
    finally:
        server.stop(data_dir)
    # The project and the admin are rows in PostgreSQL; Label Studio made no SQLite file, and
    # its log holds no database password.
    parts = make_url(url)
    with psycopg.connect(host=parts.query["host"], port=int(parts.query["port"]),
                         user=parts.username, password=PASSWORD, dbname=parts.database) as conn:
        titles = [t for (t,) in conn.execute("SELECT title FROM project")]
        admins = conn.execute("SELECT count(*) FROM htx_user").fetchone()[0]
    assert titles == ["on postgres"] and created.id and admins >= 1
    assert not list(data_dir.rglob("*.sqlite3"))
    assert PASSWORD not in info.log_file.read_text(errors="replace")


def test_a_password_in_studio_database_is_refused(tmp_path):
    (tmp_path / "labelloop.toml").write_text("""workspace = "ws"
[project]
name = "x-project"
classes = ["cat", "dog"]
images = "images"
[studio]
database = "postgresql://ls:hunter2@db.example/studio"
""", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "labelloop.toml")
    assert "[studio] database holds a password" in str(err.value)
    assert "[studio] database_password_file" in str(err.value)
    assert "LABELLOOP_STUDIO_DB_PASSWORD" in str(err.value) and "hunter2" not in str(err.value)
