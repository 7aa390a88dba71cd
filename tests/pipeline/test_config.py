"""A bad labelloop.toml is a clear error that names the key; a good one round-trips."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.project.config import (
    Config,
    ConfigError,
    LoopSection,
    ProjectSection,
    load_config,
    registry_safe_name,
    render_config,
)

GOOD = render_config("demo", ["cat", "dog"], Path("images"))


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "labelloop.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_init_text_round_trips_with_every_default(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.project.classes == ("cat", "dog")
    assert config.images_dir == (tmp_path / "images").resolve()
    assert config.store_url == f"sqlite:///{(tmp_path / '.labelloop' / 'labels.db').resolve()}"
    assert config.loop.target_precision == 0.98
    assert config.training.params(root=tmp_path).model == "small_cnn"
    # Keys without a default value are named too, commented out (TOML has no null).
    assert "# weights: unset by default" in GOOD and "# api_key_file: unset by default" in GOOD


def test_the_audit_share_defaults_by_task_and_a_named_one_is_kept(tmp_path):
    """Classification defaults to 0.4 of each batch at random, boxes to 0.3 (where their loop
    was measured), whether the config was written by init or by hand without the key."""
    boxes = render_config("boxes", ["digit"], Path("images"), task="detection")
    assert load_config(write(tmp_path, GOOD)).loop.audit_fraction == 0.4
    assert load_config(write(tmp_path, boxes)).loop.audit_fraction == 0.3
    by_hand = "\n".join(line for line in boxes.splitlines()
                        if not line.startswith("audit_fraction"))
    assert load_config(write(tmp_path, by_hand)).loop.audit_fraction == 0.3
    named = boxes.replace("audit_fraction = 0.3", "audit_fraction = 0.5")
    assert load_config(write(tmp_path, named)).loop.audit_fraction == 0.5
    # A [loop] that is not a table is the config error naming it, not a crash in the default.
    not_a_table = "loop = 3\n" + by_hand.replace("[loop]\n", "[loop_was]\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(write(tmp_path, not_a_table))


def test_a_detection_config_written_by_hand_gets_the_detection_defaults(tmp_path):
    """Only [project] with task = "detection": the keys it leaves out are a detector's, as if
    init had written them (not small_cnn, margin and 0.98, the classification defaults); the
    keys it names are kept, in a file or in code."""
    by_init = load_config(write(tmp_path, render_config("boxes", ["digit"], Path("images"),
                                                        task="detection")))
    minimal = ('[project]\nname = "boxes"\nclasses = ["digit"]\nimages = "images"\n'
               'task = "detection"\n')
    by_hand = load_config(write(tmp_path, minimal))
    assert by_hand.training == by_init.training and by_hand.loop == by_init.loop
    assert by_hand.training.model.startswith("fcos") and by_hand.training.warm_start
    assert (by_hand.loop.strategy, by_hand.loop.target_precision) == ("least_confident", 0.95)
    assert not by_hand.loop.second_opinions
    named = load_config(write(tmp_path, minimal + "[loop]\ntarget_precision = 0.9\n"
                                        'strategy = "doubtful_boxes"\n'))
    assert (named.loop.strategy, named.loop.target_precision) == ("doubtful_boxes", 0.9)
    assert named.loop.audit_fraction == 0.3
    in_code = Config(project=ProjectSection(name="boxes", classes=("digit",), images="images",
                                            task="detection"),
                     loop=LoopSection(batch_size=20))
    assert (in_code.loop.batch_size, in_code.loop.strategy) == (20, "least_confident")
    assert in_code.training.model == by_init.training.model


@pytest.mark.parametrize("old, new, named", [
    ("strategy = \"margin\"", "stratgy = \"margin\"", "loop.stratgy: unknown key"),
    ("target_precision = 0.98", "target_precision = 1.5", "loop.target_precision"),
    ("batch_size = 100", "batch_size = \"many\"", "loop.batch_size"),
    ("classes = [\"cat\", \"dog\"]", "classes = []", "project.classes"),
    ("classes = [\"cat\", \"dog\"]", "classes = [\"cat\", \"cat\"]", "duplicate class names: cat"),
    ("strategy = \"margin\"", "strategy = \"vibes\"", "unknown strategy 'vibes'; valid:"),
    ("engine = \"local\"\naddress = \"\"", "engine = \"ray\"\naddress = \"10.0.0.5\"",
     "address '10.0.0.5' is not HOST:PORT"),
    ("model = \"small_cnn\"", "model = \"resnet9000\"", "unknown model 'resnet9000'; valid:"),
    ("threshold_mode = \"pooled\"", "threshold_mode = \"global\"", "loop.threshold_mode"),
    # Not a URL: Optuna takes database URLs only.
    ("storage = \"\"", "storage = \"optuna.db\"", "[tuning] storage is not a database URL"),
    ("reference_wait_rounds = \"auto\"", "reference_wait_rounds = -1",
     "reference_wait_rounds must be >= 0 or \"auto\", got -1"),
    ("reference_wait_rounds = \"auto\"", "reference_wait_rounds = \"later\"",
     "loop.reference_wait_rounds"),
    # A traceback from Path(5) before (a review of the CLI).
    ("images = \"images\"", "images = 5", "project.images: Value error, must be a folder"),
    ("model = \"small_cnn\"", "model = \"small_cnn\"\nweights = \"imagenet\"",
     "needs a model with ImageNet weights (efficientnet_lite0, efficientnet_lite1, "
     "efficientnet_lite2, mobilenet_v2"),
])
def test_bad_values_name_the_key(tmp_path, old, new, named, ledger):
    assert old in GOOD, old
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD.replace(old, new)))
    ledger.bad_input(f"config {new}", outcome=f"refused: {str(err.value).splitlines()[0]}")
    assert named in str(err.value)


@pytest.mark.parametrize("tuning", ["every_rounds = 2", "on_drift = true"])
def test_retuning_a_probe_only_project_is_refused_when_the_config_loads(tmp_path, tuning):
    probe = GOOD.replace('mode = "finetune"', 'mode = "probe"')
    assert load_config(write(tmp_path, probe)).training.mode == "probe"
    key = tuning.split(" = ")[0]
    retuned = probe.replace(f"{key} = {'0' if key == 'every_rounds' else 'false'}", tuning)
    assert retuned.count(tuning) == 1
    with pytest.raises(ConfigError, match="trains a probe head only"):
        load_config(write(tmp_path, retuned))
    assert retuned.count("finetune_after = 0") == 1
    with_finetune = retuned.replace("finetune_after = 0", "finetune_after = 500")
    assert load_config(write(tmp_path, with_finetune)).training.finetune_after == 500


def test_a_weights_file_is_the_config_folders_and_names_stay_names(tmp_path):
    def params(weights: str):
        text = GOOD.replace('model = "small_cnn"', f'model = "resnet18"\nweights = "{weights}"')
        return load_config(write(tmp_path, text)).training.params(root=tmp_path)

    assert params("mine.pt").weights == str(tmp_path / "mine.pt")  # need not exist yet
    assert params("sub/mine.pt").weights == str(tmp_path / "sub" / "mine.pt")
    assert params("/abs/mine.pt").weights == "/abs/mine.pt"
    assert params("~/mine.pt").weights == str(Path("~/mine.pt").expanduser())
    assert params("BEST.PTH").weights == str(tmp_path / "BEST.PTH")
    for name in ("imagenet", "IMAGENET1K_V1", "ResNet18_Weights.DEFAULT"):
        assert params(name).weights == name
    assert params("  ").weights is None


def test_missing_and_unparsable_files_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="labelloop init"):
        load_config(tmp_path / "nowhere.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[project\nname = "))


def test_cli_shows_the_config_error_with_brackets_intact(tmp_path):
    write(tmp_path, GOOD.replace("strategy = \"margin\"", "stratgy = \"margin\""))
    result = CliRunner().invoke(app, ["status", "--config", str(tmp_path)])
    assert result.exit_code == 2
    assert "loop.stratgy: unknown key" in result.output


@pytest.mark.parametrize("args, message", [
    (["--classes", "cat,cat"], "duplicate class names: cat"),
    # A newline in --classes: the config was written broken and a .tmp file left behind.
    (["--classes", "dog,cat\nx,bird"], "class name 'cat\\nx' holds a control character"),
    (["--classes", "cat,dog", "--studio-url", "http://ann:hunter2@127.0.0.1:1"],
     "[studio] url holds a password"),
    (["--classes", "cat"], "at least two classes"),
    (["--classes", "cat,dog", "--images", "missing"], "no such folder"),
    (["--classes", "cat,dog", "--images", "afile"], "afile is a file; give the folder"),
])
def test_init_refuses_bad_input_and_writes_nothing(tmp_path, args, message, ledger):
    (tmp_path / "imgs").mkdir()
    base = ["init", "--folder", str(tmp_path), "--images", str(tmp_path / "imgs")]
    if "--images" in args:
        base = ["init", "--folder", str(tmp_path)]
        (tmp_path / "afile").write_bytes(b"an image, not its folder")
        args = [a if a not in ("missing", "afile") else str(tmp_path / a) for a in args]
    result = CliRunner().invoke(app, base + args)
    ledger.bad_input(f"labelloop init {' '.join(args)}",
                     outcome=f"refused: exit {result.exit_code}")
    assert result.exit_code == 2 and message in result.output
    assert "hunter2" not in result.output
    assert not (tmp_path / "labelloop.toml").exists()
    assert not (tmp_path / "labelloop.toml.tmp").exists()


def test_a_password_in_the_studio_url_is_refused_and_never_shown(tmp_path):
    studio_url = '[studio]\nurl = ""'
    assert GOOD.count(studio_url) == 1
    text = GOOD.replace(studio_url, '[studio]\nurl = "https://ann:hunter2@studio.example"')
    with pytest.raises(ConfigError, match=r"\[studio\] url holds a password") as err:
        load_config(write(tmp_path, text))
    assert "hunter2" not in str(err.value)
    # A token in the query, or a user alone, was loaded and then printed by `studio status`.
    for secret in ("https://studio.example/?token=hunter2", "https://hunter2@studio.example"):
        text = GOOD.replace(studio_url, f'[studio]\nurl = "{secret}"')
        with pytest.raises(ConfigError, match="holds a user, password, query") as err:
            load_config(write(tmp_path, text))
        assert "hunter2" not in str(err.value)
    for fine in ("https://studio.example", "http://[::1]:8080", "http://host:8080/labelstudio"):
        ok = GOOD.replace(studio_url, f'[studio]\nurl = "{fine}"')
        assert load_config(write(tmp_path, ok)).studio.url == fine


def test_init_never_overwrites_a_project(tmp_path):
    (tmp_path / "imgs").mkdir()
    cmd = ["init", "--folder", str(tmp_path), "--images", str(tmp_path / "imgs"),
           "--classes", "cat,dog"]
    first = CliRunner().invoke(app, cmd)
    assert first.exit_code == 0
    # Run from elsewhere, the next step it names says where the config is.
    assert f"next: `labelloop ingest -c {tmp_path / 'labelloop.toml'}`" in first.output
    before = (tmp_path / "labelloop.toml").read_text()
    again = CliRunner().invoke(app, cmd[:-1] + ["ant,bee"])
    assert again.exit_code == 2 and "already exists" in again.output
    assert (tmp_path / "labelloop.toml").read_text() == before


def test_a_store_given_as_a_plain_path_is_a_sqlite_file_beside_the_config(tmp_path, monkeypatch):
    # "labels.db" used to become a SQLite file in whatever folder the command ran from (status
    # from the parent folder opened an empty store); an absolute path keeps working.
    text = GOOD.replace('[store]\nurl = ""', '[store]\nurl = "stores/labels.db"')
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(write(tmp_path, text))
    assert config.store_url == f"sqlite:///{(tmp_path / 'stores' / 'labels.db').resolve()}"
    absolute = GOOD.replace('[store]\nurl = ""', f'[store]\nurl = "{tmp_path / "x.db"}"')
    assert load_config(write(tmp_path, absolute)).store_url == f"sqlite:///{tmp_path / 'x.db'}"


def test_a_config_string_with_control_characters_is_written_as_valid_toml():
    import tomllib

    from pipeline.project.config import _toml

    value = 'a\nb\t\x7f"\\c'
    assert tomllib.loads("x = " + _toml(value))["x"] == value


def test_a_command_run_below_the_project_finds_its_config(tmp_path, monkeypatch):
    from pipeline.project.workspace import find_config

    write(tmp_path, GOOD)
    (tmp_path / "images" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "images" / "sub")  # it said "no config" here
    assert find_config(None).root == tmp_path.resolve()
    assert find_config(str(tmp_path)).root == tmp_path.resolve()  # scripts pass text
    # The path `labelloop serve` hands its Train button's rounds is that file too (it was
    # ./labelloop.toml, which does not exist there).
    from pipeline.project.workspace import config_file

    assert config_file(None).resolve() == (tmp_path / "labelloop.toml").resolve()
    monkeypatch.chdir(tmp_path.parent)  # nothing at or above: the error names ./labelloop.toml
    with pytest.raises(ConfigError, match=f"no config at {tmp_path.parent / 'labelloop.toml'}"):
        find_config(None)


@pytest.mark.parametrize("title, name", [
    ("Batch 2: cars", "Batch 2- cars"), ("a/b", "a-b"), ("..", "project"),
    ("Cats \"big\" and 'small'", "Cats 'big' and 'small'"), ("plain", "plain")])
def test_a_label_studio_title_becomes_a_name_the_config_and_the_registry_take(
        tmp_path, title, name):
    assert registry_safe_name(title) == name
    path = tmp_path / "labelloop.toml"
    path.write_text(render_config(name, ["cat", "dog"], Path("images")), encoding="utf-8")
    assert load_config(path).project.name == name
