"""Database URLs by config: a password is refused in labelloop.toml with where to put it, comes
from ``password_file`` or the environment, reaches the store, and is masked wherever a URL is
shown (pipeline/project/databases.py)."""

from pathlib import Path

import pytest

from labeling.store import LabelStore, StoreError
from pipeline.project.config import ConfigError, load_config, render_config
from pipeline.project.databases import DatabaseError, masked
from pipeline.project.project import open_project
from tests.postgres import PASSWORD

SECRET = PASSWORD
GOOD = render_config("demo", ["cat", "dog"], Path("images"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "labelloop.toml"
    path.write_text(text, encoding="utf-8")
    return path


def with_section(section: str, lines: str) -> str:
    return GOOD.replace(f"[{section}]\n", f"[{section}]\n{lines}\n", 1)


@pytest.mark.parametrize("where", ["user", "query"])
@pytest.mark.parametrize("section, key, env", [
    ("store", "url", "LABELLOOP_STORE_PASSWORD"),
    ("registry", "tracking_uri", "LABELLOOP_REGISTRY_PASSWORD"),
    ("tuning", "storage", "LABELLOOP_TUNING_PASSWORD"),
])
def test_a_password_in_the_config_is_refused_with_where_to_put_it(tmp_path, section, key, env,
                                                                  where):
    # libpq takes ?password= too: it was accepted, and shown in errors and tune's summary.
    url = (f"postgresql+psycopg://lab:{SECRET}@db.example/x" if where == "user" else
           f"postgresql+psycopg://lab@/x?host=/run/pg&password={SECRET}")
    text = with_section(section, f'{key} = "{url}"')
    text = text.replace(f'{key} = ""\n', "", 1)  # the default line render_config wrote
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert f"[{section}] {key} holds a password" in message
    assert f"[{section}] password_file" in message and env in message
    assert SECRET not in message


def test_the_password_comes_from_the_file_or_the_environment(tmp_path):
    (tmp_path / "store.pw").write_text(SECRET + "\n", encoding="utf-8")
    text = with_section("store", 'password_file = "store.pw"').replace(
        'url = ""', 'url = "postgresql+psycopg://lab@db.example:5433/labels"', 1)
    text = text.replace('storage = ""', 'storage = "postgresql+psycopg://opt@db.example/optuna"')
    config = load_config(write(tmp_path, text))
    urls = config.database_urls({"LABELLOOP_TUNING_PASSWORD": "from-env",
                                  "LABELLOOP_STORE_PASSWORD": "ignored: the file wins"})
    assert urls.store == f"postgresql+psycopg://lab:{SECRET}@db.example:5433/labels"
    assert urls.tuning == "postgresql+psycopg://opt:from-env@db.example/optuna"
    assert urls.registry == config.registry_uri  # the workspace's SQLite file, untouched
    assert SECRET not in repr(urls) and "from-env" not in repr(urls)
    assert masked(urls.store) == "postgresql+psycopg://lab:***@db.example:5433/labels"


def test_a_missing_password_file_or_a_password_for_sqlite_is_a_clear_error(tmp_path):
    text = with_section("registry", 'password_file = "nope.pw"').replace(
        'tracking_uri = ""', 'tracking_uri = "postgresql+psycopg://ml@db.example/mlflow"', 1)
    config = load_config(write(tmp_path, text))
    with pytest.raises(DatabaseError, match=r"\[registry\] password_file .*nope.pw cannot be "
                                            "read .*LABELLOOP_REGISTRY_PASSWORD"):
        config.database_urls({})
    sqlite = load_config(write(tmp_path, with_section("store", 'password_file = "db.pw"')))
    (tmp_path / "db.pw").write_text(SECRET, encoding="utf-8")
    with pytest.raises(DatabaseError, match=r"\[store\] password_file gives a password, but "
                                            r"\[store\] url .* is not a database URL"):
        sqlite.database_urls({})


def test_a_password_in_the_shell_for_another_projects_database_leaves_sqlite_projects_alone(
        tmp_path):
    # One shell, two projects: LABELLOOP_STORE_PASSWORD set for one on PostgreSQL must not stop
    # another that keeps its labels in the workspace's SQLite file.
    plain = load_config(write(tmp_path, GOOD))
    urls = plain.database_urls({"LABELLOOP_STORE_PASSWORD": SECRET,
                                "LABELLOOP_REGISTRY_PASSWORD": SECRET})
    assert urls.store == plain.database_urls({}).store and SECRET not in urls.store
    assert urls.registry == plain.registry_uri


def test_masked_hides_passwords_of_databases_and_servers():
    shown = masked("postgresql+psycopg://u:p%40ss@h/db?host=/tmp/s")
    assert shown.startswith("postgresql+psycopg://u:***@h/db?host=") and "ss" not in shown
    assert masked("https://u:pw@mlflow.example:5000") == "https://u:***@mlflow.example:5000"
    assert masked("sqlite:////work/ws/labels.db") == "sqlite:////work/ws/labels.db"
    assert masked(f"postgresql+psycopg://u@/db?host=/tmp&password={SECRET}&port=5") == (
        "postgresql+psycopg://u@/db?host=/tmp&password=***&port=5")
    assert SECRET not in masked(f"postgresql://u@h/db?sslpassword={SECRET}")


def test_a_project_opens_its_store_with_the_password_and_never_shows_it(
        tmp_path, postgres_server, capfd):
    url = postgres_server.create_password_database()
    (tmp_path / "images").mkdir()
    (tmp_path / "db.pw").write_text(SECRET, encoding="utf-8")
    text = with_section("store", 'password_file = "db.pw"').replace(
        'url = ""', f'url = "{url}"', 1)
    config_path = write(tmp_path, text)
    project = open_project(load_config(config_path))
    project.store.add_items([])
    assert project.store.count_items() == 0
    project.close()
    assert SECRET not in repr(project) and SECRET not in config_path.read_text()

    # The wrong password: one clear error, the URL shown masked, the password nowhere.
    with pytest.raises(StoreError) as err:
        LabelStore(url.replace("labelloop_pw@", "labelloop_pw:wrong-pw@"))
    assert "cannot be opened" in str(err.value)
    assert "password authentication failed" in str(err.value)
    assert "labelloop_pw:***@" in str(err.value) and "wrong-pw" not in str(err.value)
    out, errors = capfd.readouterr()
    assert SECRET not in out + errors
