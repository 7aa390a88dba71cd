"""The loop's model and pool steps on real digits, with an oracle writing the human labels
(the Label Studio side is covered by the integration tests)."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from labeling.selections import Pick, picks, record_picks
from labeling.store import NewLabel
from pipeline.datasets import export_dataset, read_labels_csv
from pipeline.ingest import ingest_folder
from pipeline.project.project import open_project
from pipeline.project.workspace import find_config, init_project
from pipeline.registry.registry import RegistryError
from pipeline.round import accept as accept_step
from pipeline.round import labeled
from pipeline.round import predict as predict_step
from pipeline.round import promote as promote_step
from pipeline.round import select as select_step
from pipeline.round import train as train_step
from pipeline.round.ingest import ingest_new
from pipeline.round.steps import run_round
from pipeline.status import held_out_parts
from training.checkpoint import load_checkpoint
from training.data import ImageFileDataset

pytestmark = pytest.mark.slow
CLASSES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    export_dataset("digits", root / "data")
    truth = {str(p.resolve()): label for p, label in read_labels_csv(root / "data/labels.csv")}
    return root, truth


@pytest.fixture
def project(digits, tmp_path):
    data, truth = digits
    init_project(tmp_path, images=data / "data/images", classes=CLASSES, name="digits-test")
    proj = open_project(find_config(tmp_path))
    ingest_folder(proj.store, proj.config.images_dir)
    yield proj, truth
    proj.close()


def answer(proj, truth, *, wrong: set[str] = frozenset()):
    """Label every picked item that has no human label yet, as an annotator would."""
    paths = {i.key: i.path for i in proj.store.items()}
    human = proj.store.current_labels(sources=("human",))
    todo = [k for k in picks(proj.store) if k not in human]
    labels = []
    for k in todo:
        label = truth[str(Path(paths[k]).resolve())]
        if k in wrong:
            label = str((int(label) + 1) % 10)
        labels.append(NewLabel(k, label, "human", who="oracle"))
    proj.store.add_labels(labels)
    return len(todo)


def one_round(proj, truth):
    rid = proj.store.start_round()
    answer(proj, truth)
    trained = train_step.train_challenger(proj, rid, progress=False)
    promoted = promote_step.decide_promotion(proj, trained.get("version"))
    predicted = predict_step.predict_pool(proj, rid, progress=False)
    accepted = accept_step.auto_accept(proj, rid, predicted)
    selected = select_step.select_batch(proj, rid, predicted)
    proj.store.finish_round(rid, {})
    return trained, promoted, accepted, selected


@pytest.fixture
def crowd_project(digits, tmp_path):
    """As ``project``, waiting a round for held-out references as a crowd's project does
    ("auto" waits only where a second person can answer)."""
    data, truth = digits
    init_project(tmp_path, images=data / "data/images", classes=CLASSES, name="digits-test")
    config = tmp_path / "labelloop.toml"
    text = config.read_text()
    config.write_text(text.replace('reference_wait_rounds = "auto"', "reference_wait_rounds = 1"))
    assert config.read_text() != text
    proj = open_project(find_config(tmp_path))
    ingest_folder(proj.store, proj.config.images_dir)
    yield proj, truth
    proj.close()


def test_rounds_raise_accuracy_and_never_overwrite_people(crowd_project):
    proj, truth = crowd_project
    scores, judged_on = [], []
    for _ in range(4):
        trained, promoted, accepted, selected = one_round(proj, truth)
        if "challenger_score" in promoted:
            judged_on.append((promoted["challenger_score"]["n"],
                              len(labeled.choosing_part(proj, labeled.labeled_sets(proj)[1]))))
        champion = proj.registry.champion()
        if champion is not None:
            _, eval_set = labeled.labeled_sets(proj)
            scores.append(promote_step.score_on_eval(proj, champion.version, eval_set)["accuracy"])
    assert selected["picked"] > 0 and selected["audit"] > 0 and selected["strategy"] > 0
    assert scores[-1] >= scores[0] and scores[-1] > 0.9
    # Promotion was decided on the held-out items that choose, about a quarter of them.
    assert judged_on and all(0 < n == part for n, part in judged_on)
    # The held-out items the last round picked were answered in this one: their second
    # opinions could not be back yet, so the thresholds wait a round for them. Thresholds are
    # tested on the held-out items that chose no model.
    newest = proj.store.rounds()[-1]["id"]
    certifying = labeled.certifying_part(proj, picks(proj.store, holdout=True))
    assert len(certifying) < len(picks(proj.store, holdout=True))
    assert accepted["held_out_choosing"] == len(
        labeled.choosing_part(proj, labeled.labeled_sets(proj)[1])) > 0
    # What status shows of it (these steps' rounds record no stats; run_round's do).
    assert held_out_parts(accepted) == {
        "test_thresholds": accepted["validation"], "choose_models": accepted["held_out_choosing"],
        "waiting": accepted["validation_waiting"], "selection_share": 0.25}
    made = [p.round_id for p in certifying.values()]
    assert accepted["validation_waiting"] == made.count(newest - 1) > 0
    assert accepted["validation"] == sum(r < newest - 1 for r in made) > 0
    # Evaluation items are random picks that never train a model.
    train_set, eval_set = labeled.labeled_sets(proj)
    assert not set(train_set) & set(eval_set)
    assert all(p.reason in ("random", "audit") for k, p in picks(proj.store).items()
               if k in eval_set)
    # People's labels stand: no item with a human label has a machine label in force.
    for key, lab in proj.store.current_labels().items():
        if any(h.source == "human" for h in proj.store.history(key)):
            assert lab.source == "human"
    # A champion that does not change gets the same registry version: no duplicates.
    versions_before = [v.version for v in proj.registry.versions()]
    again = train_step.train_challenger(proj, None, progress=False)
    assert again.get("version") in (None, *versions_before)


def test_the_temperature_is_fitted_on_the_held_out_items_that_choose(digits, tmp_path):
    """The held-out answers the thresholds are tested on never tune the model: wrong answers
    there leave the fitted temperature as it was; wrong answers in the choosing part raise it."""
    data, truth = digits
    fitted = {}
    for wrong_in in ("nowhere", "certifying", "choosing"):
        root = tmp_path / wrong_in
        init_project(root, images=data / "data/images", classes=CLASSES, name="temperature")
        proj = open_project(find_config(root))
        try:
            ingest_folder(proj.store, proj.config.images_dir)
            paths = {i.key: i.path for i in proj.store.items()}
            keys = sorted(paths)
            held, train = keys[:200], keys[200:400]
            record_picks(proj.store, [Pick(k, "random", holdout=True) for k in held]
                         + [Pick(k, "random") for k in train], round_id=None)
            choosing = labeled.choosing_part(proj, dict.fromkeys(held))
            assert len(choosing) >= train_step.MIN_CALIBRATION_ITEMS
            flip = {"nowhere": set(), "choosing": set(choosing),
                    "certifying": set(held) - set(choosing)}[wrong_in]
            proj.store.add_labels([
                NewLabel(k, str((int(truth[str(Path(paths[k]).resolve())]) + (k in flip)) % 10),
                         "human", who="oracle") for k in held + train])
            version = train_step.train_challenger(proj, None, progress=False)["version"]
            fitted[wrong_in] = proj.registry.version(version).metrics["temperature_fitted"]
        finally:
            proj.close()
    assert fitted["certifying"] == pytest.approx(fitted["nowhere"], rel=1e-6)
    assert fitted["choosing"] > 1.5 * fitted["nowhere"]


def test_worse_challenger_is_not_promoted_and_rollback_restores(project):
    proj, truth = project
    for _ in range(3):
        *_, accepted, _ = one_round(proj, truth)
    # One annotator, whose answers never change: the thresholds wait for nothing.
    assert accepted["validation_waiting"] == 0 and accepted["validation"] > 0
    good = proj.registry.champion()
    assert good is not None
    train_set, _ = labeled.labeled_sets(proj)
    # Corrupt every training label (people's mistakes), keep the evaluation labels right.
    proj.store.add_labels([NewLabel(k, str((int(v) + 1) % 10), "human", who="vandal")
                           for k, v in train_set.items()])
    bad = train_step.train_challenger(proj, None, progress=False)
    assert bad["trained"]
    decision = promote_step.decide_promotion(proj, bad["version"])
    assert not decision["promoted"]
    assert proj.registry.champion().version == good.version
    proj.registry.promote(bad["version"], reason="forced in a test")
    assert proj.registry.champion().version == bad["version"]
    restored = proj.registry.rollback(reason="bad model")
    assert restored.version == good.version == proj.registry.champion().version
    assert [e.action for e in proj.registry.history()][-2:] == ["promote", "rollback"]


def test_new_training_parameters_train_a_challenger_and_a_rollback_is_not_undone(project):
    # The snapshot was the labels' hash alone: a changed [training] (or tuning's parameters)
    # on the same labels reused the old checkpoint ("no new labels"), and after `models
    # rollback` the next round registered the rolled-back version again and promoted it.
    proj, truth = project
    for _ in range(2):
        one_round(proj, truth)
    first = proj.registry.champion()
    assert first is not None
    same = train_step.train_challenger(proj, None, progress=False)
    assert not same["trained"] and "no new labels" in same["reason"]
    proj.tuned_params_path.write_text(json.dumps({"params": {"lr": 0.002}}), encoding="utf-8")
    other = train_step.train_challenger(proj, None, progress=False)
    assert other["trained"] and other["version"] != first.version
    assert load_checkpoint(proj.registry.checkpoint_path(other["version"])).params.lr == 0.002
    proj.registry.promote(other["version"], reason="by hand in a test")
    assert proj.registry.rollback(reason="worse on my images").version == first.version
    again = train_step.train_challenger(proj, None, progress=False)
    assert not again["trained"] and f"v{other['version']}" in again["reason"]
    assert "was set aside (by `labelloop models rollback`" in again["reason"]
    assert proj.registry.champion().version == first.version
    assert len(proj.registry.versions()) == 2
    # `models promote` of the older version, the other way back: not undone either.
    proj.registry.promote(other["version"], reason="by hand in a test")
    proj.registry.promote(first.version, reason="manual promotion")
    again = train_step.train_challenger(proj, None, progress=False)
    assert not again["trained"] and "was set aside" in again["reason"]


def test_the_strategy_sends_no_copy_of_an_item_people_labeled(project, monkeypatch):
    # Near-duplicate groups were only applied after people answered (the copy of a held-out
    # item dropped from training): people labeled an image and its copy for nothing.
    proj, truth = project
    for _ in range(2):
        one_round(proj, truth)
    answer(proj, truth)
    rid = proj.store.start_round()
    predicted = predict_step.predict_pool(proj, rid, progress=False)
    labeled_keys = sorted(proj.store.current_classes(sources=("human",)))
    candidates = select_step.unasked(proj, picks(proj.store))
    # Every candidate but the last ten is a copy of a labeled item.
    groups = {k: f"g{i % len(labeled_keys)}" for i, k in enumerate(candidates[:-10])}
    groups.update({k: f"g{i}" for i, k in enumerate(labeled_keys)})
    monkeypatch.setattr(type(proj.store), "near_duplicate_groups", lambda self: groups)
    selected = select_step.select_batch(proj, rid, predicted)
    strategy = [k for k, p in picks(proj.store).items() if p.round_id == rid and not p.holdout]
    assert selected["picked"] > 0 and strategy
    assert set(strategy) <= set(candidates[-10:])


def test_a_locked_model_registry_stops_the_round_before_it_changes_anything(project, ledger):
    """Another process holds MLflow's SQLite store: the round says so and writes nothing."""
    proj, _ = project
    proj.registry.check()  # create the store
    db = proj.config.workspace_dir / "mlflow.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RegistryError, match="(?i)lock"):
            run_round(proj)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ledger.fault("MLflow store locked by another process", outcome="round refused before any "
                 "change", lost_labels=0, duplicate_tasks=0)
    assert proj.store.rounds() == []
    assert proj.store.current_labels() == {}
    assert picks(proj.store) == {}


@pytest.mark.parametrize("strategy", ["core_set", "badge"])
def test_strategies_on_embeddings_pick_a_full_batch_of_unlabeled_items(digits, tmp_path,
                                                                       strategy):
    data, truth = digits
    config = init_project(tmp_path, images=data / "data/images", classes=CLASSES,
                          name=f"digits-{strategy}")
    config.write_text(config.read_text().replace('strategy = "margin"',
                                                 f'strategy = "{strategy}"'))
    proj = open_project(find_config(tmp_path))
    try:
        assert proj.config.loop.strategy == strategy
        ingest_folder(proj.store, proj.config.images_dir)
        one_round(proj, truth)  # cold start
        before = set(proj.store.current_labels(sources=("human",)))
        _, _, _, selected = one_round(proj, truth)
        assert selected["strategy"] > 0 and selected["picked"] == proj.config.loop.batch_size
        new = {k for k, p in picks(proj.store).items() if p.round_id == 2}
        assert len(new) == selected["picked"] and not new & before
    finally:
        proj.close()


def test_a_later_round_predicts_the_pool_without_decoding_it_again(project, monkeypatch):
    proj, truth = project
    for _ in range(2):
        one_round(proj, truth)
    first = predict_step.saved_files(proj)[-1]
    assert list(proj.pixels_dir.glob("1x28/chunk-*.npz"))  # the small CNN's input size

    def decode(*_args):
        raise AssertionError("an image was decoded again")

    monkeypatch.setattr(ImageFileDataset, "__getitems__", decode)
    rid = proj.store.start_round()
    again = predict_step.predict_pool(proj, rid, progress=False)
    assert again["file"] != str(first)
    keys, probs, _ = predict_step.load_predictions(first)
    keys2, probs2, _ = predict_step.load_predictions(again["file"])
    assert keys2 == keys and np.array_equal(probs2, probs)
    # Promotion and monitoring score the held-out items from the cache as well.
    eval_set = labeled.labeled_sets(proj)[1]
    champion = proj.registry.champion().version
    assert promote_step.score_on_eval(proj, champion, eval_set)["n"] == len(eval_set) > 0


def test_the_first_prediction_reads_the_pixels_that_the_rounds_ingest_kept(digits, tmp_path,
                                                                            monkeypatch):
    data, truth = digits
    init_project(tmp_path, images=data / "data/images", classes=CLASSES, name="digits-first")
    proj = open_project(find_config(tmp_path))
    try:
        assert ingest_new(proj, progress=False)["added"] == len(proj.store.items()) > 0
        one_round(proj, truth)  # the first batch: no model yet, nothing predicted
        assert not predict_step.saved_files(proj)
        rid = proj.store.start_round()
        answer(proj, truth)
        trained = train_step.train_challenger(proj, rid, progress=False)  # reads its files
        promote_step.decide_promotion(proj, trained["version"])

        def decode(*_args):
            raise AssertionError("an image was decoded again")

        monkeypatch.setattr(ImageFileDataset, "__getitems__", decode)
        predicted = predict_step.predict_pool(proj, rid, progress=False)
        monkeypatch.undo()
        keys, probs, _ = predict_step.load_predictions(predicted["file"])
        model = load_checkpoint(proj.registry.checkpoint_path(trained["version"]))
        from_files = proj.task.predict(model, labeled.paths_of(proj, keys), embeddings=False,
                                       progress=False)
        assert np.array_equal(probs, from_files.probs)
    finally:
        proj.close()


def test_accounts_made_by_hand_make_the_thresholds_wait_for_second_opinions(project):
    # [studio] annotators stays 0 when people add accounts with `labelloop studio
    # add-annotator`; they can still give second opinions, so "auto" must wait for them.
    proj, _ = project
    keys = [i.key for i in proj.store.items()][:4]
    first, second = proj.store.start_round(), proj.store.start_round()
    record_picks(proj.store, [Pick(k, "random", holdout=True) for k in keys[:2]],
                 round_id=first)
    record_picks(proj.store, [Pick(k, "random", holdout=True) for k in keys[2:]],
                 round_id=second)
    assert proj.config.studio.annotators == 0
    assert accept_step.waiting_references(proj, second + 1) == set()  # one person: no wait
    folder = proj.config.studio_dir / "annotators"
    folder.mkdir(parents=True)
    for name in ("ann1", "ann2"):  # what add_annotator leaves: a record per account
        (folder / f"{name}.json").write_text('{"email": "x", "user_id": 7}')
    assert accept_step.waiting_references(proj, second + 1) == set(keys[2:])


def test_audits_shrink_with_what_is_left_for_people(project, tmp_path):
    # Near the end of a pool the machine has labeled nearly everything; a full audit share
    # would be most of what people are sent. The audits keep their share of the batch instead.
    proj, _ = project
    keys = sorted(i.key for i in proj.store.items())
    open_keys, rest = keys[:7], keys[7:]
    proj.store.add_labels([NewLabel(k, "1", "machine", who="labelloop", model_version="1",
                                    confidence=0.99) for k in rest])
    probs = np.full((len(keys), len(CLASSES)), 0.02)
    probs[:, 1] = 1 - 0.02 * (len(CLASSES) - 1)
    probs[:7] = 1 / len(CLASSES)  # the open ones: unsure
    file = tmp_path / "predictions.npz"
    np.savez(file, keys=np.array(keys), probs=probs, embeddings=np.zeros((len(keys), 0)))
    loop = proj.config.loop
    assert loop.batch_size >= 20 and len(rest) > loop.batch_size  # a full batch is possible
    rid = proj.store.start_round()
    record = select_step.select_batch(proj, rid, {"file": str(file), "version": "1"})
    want = round(7 * loop.audit_fraction / (1 - loop.audit_fraction))
    assert record["audit"] == want < round(loop.batch_size * loop.audit_fraction)
    made = picks(proj.store)
    assert {k for k, p in made.items() if p.reason == "strategy"} <= set(open_keys)
    assert record["strategy"] + sum(k in open_keys for k, p in made.items()
                                    if p.reason == "audit") == 7  # every open item is asked
    # Everything labeled: nothing is audited any more, nothing is sent.
    assert select_step.audit_count(100, 0.3, 0) == 0
    assert select_step.audit_count(100, 0.3, 500) == 30 == select_step.audit_count(100, 0.3, 70)
    assert select_step.audit_count(100, 1.0, 0) == 100  # all audit: as configured


def test_images_that_arrive_once_the_pool_is_machine_labeled_get_their_audit_share(
        project, tmp_path):
    # Every item machine-labeled: the audits shrink to nothing. Then 50 new images (another
    # camera: inverted) arrive and the champion's thresholds accept them; a random share of
    # them must still go to people, or the bound never sees them.
    from PIL import Image, ImageOps

    proj, _ = project
    old = sorted(i.key for i in proj.store.items())
    previous = proj.store.start_round()
    # A fifth of the pool was held out over the earlier rounds, and answered.
    record_picks(proj.store, [Pick(k, "audit", holdout=True) for k in old[:360]],
                 round_id=previous)
    proj.store.add_labels([NewLabel(k, "1", "human", who="oracle") for k in old[:360]])
    proj.store.finish_round(previous, {"select": {"picked": 360, "audit": 360}})
    more = tmp_path / "more"
    more.mkdir()
    for item in proj.store.items()[:50]:
        with Image.open(item.path) as img:
            ImageOps.invert(img.convert("L")).save(more / f"inv-{Path(item.path).name}")
    assert len(ingest_folder(proj.store, more).added) == 50
    # They came while a batch waited in Label Studio: that round drew nothing, so they are
    # still new to the next draw (they were never audited at all).
    waited = proj.store.start_round()
    proj.store.finish_round(waited, {"select": {"picked": 0, "waiting": 111, "reason": "..."}})
    keys = sorted(i.key for i in proj.store.items())
    new = set(keys) - set(old)
    proj.store.add_labels([NewLabel(k, "1", "machine", who="labelloop", model_version="1",
                                    confidence=0.99) for k in keys])
    probs = np.full((len(keys), len(CLASSES)), 0.02)
    probs[:, 1] = 1 - 0.02 * (len(CLASSES) - 1)
    file = tmp_path / "predictions.npz"
    np.savez(file, keys=np.array(keys), probs=probs, embeddings=np.zeros((len(keys), 0)))
    rid = proj.store.start_round()
    record = select_step.select_batch(proj, rid, {"file": str(file), "version": "1"})
    # Held out at the rate the rest of the pool was (at the audit share, 0.4, they would be
    # too many of the held-out items): still a uniform sample of the pool.
    assert record["audit"] == round(50 * 360 / len(keys)) == 10 == record["picked"]
    audited = {k for k, p in picks(proj.store).items() if p.round_id == rid}
    assert len(audited) == 10 and audited <= new


def test_no_second_opinion_is_asked_where_the_admin_is_the_only_person(project, monkeypatch):
    import pipeline.round.sync as sync_module

    proj, _ = project
    assert proj.config.loop.second_opinions and not proj.config.studio.url
    monkeypatch.setattr(sync_module, "session", lambda p: pytest.fail("asked nobody"))
    assert sync_module.ask_opinions(proj) == 0
    (proj.config.studio_dir / "annotators").mkdir(parents=True)
    (proj.config.studio_dir / "annotators" / "ann1.json").write_text("{}")
    monkeypatch.setattr(sync_module, "session", lambda p: (_ for _ in ()).throw(KeyError("on")))
    with pytest.raises(KeyError):  # one account besides the admin: a second person exists
        sync_module.ask_opinions(proj)


def test_status_says_when_a_held_out_tie_has_nobody_left_to_break_it(project, monkeypatch):
    import pipeline.status as status_module

    proj, _ = project
    seen = []
    monkeypatch.setattr(status_module, "ties_nobody_can_break",
                        lambda store, accounts: seen.append(accounts) or 2)
    warnings = status_module.project_status(proj)["warnings"]
    assert seen == [set()]  # no accounts yet; with some, the store's ties are counted
    assert any(w.startswith("2 held-out item(s) tied or skipped, and every annotator account") and
               "labelloop studio add-annotator" in w for w in warnings)
    # The accounts are named by the emails sync records (the admin's answers are no
    # account's); a record that cannot be read does not stop status.
    folder = proj.config.studio_dir / "annotators"
    folder.mkdir(parents=True)
    for name in ("ann1", "ann2"):
        (folder / f"{name}.json").write_text(f'{{"email": "{name}@a.test", "user_id": 7}}')
    (folder / "broken.json").write_text("{")
    (folder / "partial.json").write_text('{"email": "p@a.test"}')
    status_module.project_status(proj)
    assert seen[-1] == {"ann1@a.test", "ann2@a.test"}


def test_a_champion_whose_checkpoint_is_damaged_or_gone_gives_way_and_cannot_come_back(
        project, tmp_path):
    # Every round stopped at the promote or predict step, with a traceback or the advice to
    # run the round again; `models promote` took a version whose checkpoint was gone.
    from typer.testing import CliRunner

    from pipeline.cli.app import app

    proj, truth = project
    one_round(proj, truth)  # picks the first batch
    one_round(proj, truth)  # trains on it
    first = proj.registry.champion().version
    ckpt = proj.registry.checkpoint_path(first)
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    answer(proj, truth)
    challenger = train_step.train_challenger(proj, None, progress=False)["version"]
    decision = promote_step.decide_promotion(proj, challenger)
    assert decision["promoted"] and proj.registry.champion().version == challenger
    assert f"champion v{first} cannot be read" in decision["reason"]
    config = str(tmp_path / "labelloop.toml")
    refused = CliRunner().invoke(app, ["models", "promote", first, "--config", config])
    assert refused.exit_code == 2 and f"v{first} cannot be the champion" in refused.output
    assert proj.registry.champion().version == challenger
    # Nor does a rollback bring it back (it did, with a warning, and every round stopped).
    history = len(proj.registry.history())
    refused = CliRunner().invoke(app, ["models", "rollback", "--config", config])
    assert refused.exit_code == 2 and f"v{first} cannot be the champion again" in refused.output
    assert "champion is unchanged" in refused.output
    assert proj.registry.champion().version == challenger
    assert len(proj.registry.history()) == history
    ckpt.unlink()  # gone
    assert "is missing" in promote_step.checkpoint_problem(proj, first)



def test_people_bounds_and_status_use_the_human_labels_error_set_apart(project):
    from pipeline.round.reference import people_bounds
    from pipeline.status import project_status

    proj, _ = project
    loop = proj.config.loop.model_copy(update={"reference_error": 0.005, "human_error": 0.05})
    proj.config = proj.config.model_copy(update={"loop": loop})
    bounds = people_bounds(proj)
    assert (bounds.rho, bounds.human) == (0.005, 0.05)
    assert bounds.human_how == "assumed ([loop] human_error)"
    proj.store.add_labels([NewLabel(proj.store.items()[0].key, "3", "human", who="a")])
    cert = project_status(proj)["certificate"]
    assert cert["human_error_ub"] == 0.05 and "people err at most 0.050" in cert["assumes"]
    # And the certificate an export writes beside its file (it had rho's 0.005).
    from pipeline.delivery import deliver

    out = proj.config.root / "out.csv"
    deliver(proj.store, proj.config, out, format="csv")
    sidecar = json.loads((proj.config.root / "out.certificate.json").read_text())
    assert sidecar["human_error_ub"] == 0.05


def test_a_skipped_held_out_item_is_predicted_for_the_threshold_test_and_named_by_status(
        project):
    from sqlalchemy import select

    from labeling.schema import Item, StudioTaskSync, utcnow
    from pipeline.status import project_status

    proj, _ = project
    key = proj.store.items()[0].key
    record_picks(proj.store, [Pick(key, "random", holdout=True)], round_id=None)
    with proj.store.transaction() as s:
        item = s.scalar(select(Item).where(Item.key == key))
        s.add(StudioTaskSync(project_id=1, task_id=10, item_id=item.id, outcome="skipped",
                             synced_at=utcnow()))
        item.status = "skipped"
    # Predicted, so that the accept step counts it against the model (validation_set keeps
    # a tied key only where it has a prediction).
    assert key in {i.key for i in labeled.items_to_predict(proj, set())}
    warnings = project_status(proj)["warnings"]
    assert any(w.startswith("1 held-out item(s) skipped by everyone") for w in warnings)


def test_labels_written_during_an_export_never_leave_its_certificate_of_other_labels(
        project, monkeypatch):
    # A round writing labels between the export's rows and its certificate left 54 machine
    # rows beside a certificate counting 412 (a user's review). Here a sync writes people's
    # labels right after the rows are read: the certificate counts what the file holds.
    import pipeline.delivery as delivery

    proj, _ = project
    keys = [i.key for i in proj.store.items()]
    proj.store.add_labels([NewLabel(k, "3", "human", who="a") for k in keys[:5]])
    real, tries, writes = delivery.export_labels, [], iter(keys[5:])

    def export_then_a_sync_writes(*args, **kwargs):
        report = real(*args, **kwargs)
        tries.append(report.rows)
        proj.store.add_labels([NewLabel(next(writes), "4", "human", who="b")])
        if round_record_changes:
            proj.store.save_round(rid, {"done": [], "n": len(tries)})
        return report

    monkeypatch.setattr(delivery, "export_labels", export_then_a_sync_writes)
    round_record_changes, rid = False, proj.store.start_round()
    out = proj.config.root / "labels.csv"
    done = delivery.deliver(proj.store, proj.config, out, format="csv")
    assert tries == [5]  # labels written meanwhile need no second try: counted with the rows
    assert done.certificate["human"] == done.report.rows == 5
    assert done.certificate["unlabeled"] == len(keys) - 5
    assert json.loads(done.certificate_file.read_text())["exported_rows"] == 5
    # What the certificate reads beside the rows (here a round's record) changing each time:
    # written again, 3 times, then refused, with no certificate left of another file.
    round_record_changes, tries[:] = True, []
    with pytest.raises(delivery.ExportError, match="changed while the labels were exported, 3 "
                                                   "times"):
        delivery.deliver(proj.store, proj.config, out, format="csv", force=True)
    assert tries == [6, 7, 8]
    assert not done.certificate_file.exists()  # it described the file replaced


def test_an_export_between_a_rounds_accept_and_its_drift_test_says_so(project):
    # The drift test comes last in a round and may count machine labels wrong: an export
    # between (a round stopped after accepting) certified without it, and said nothing.
    from pipeline.delivery import deliver

    proj, _ = project
    rid = proj.store.start_round()
    proj.store.save_round(rid, {"done": ["accept"], "accept": {}})  # stopped after accept
    out = proj.config.root / "mid.csv"
    assert deliver(proj.store, proj.config, out, format="csv").certificate[
        "unfinished_round"] == rid
    proj.store.finish_round(rid, {"done": ["accept", "monitor"], "accept": {}, "monitor": {}})
    assert "unfinished_round" not in deliver(proj.store, proj.config, out, format="csv",
                                             force=True).certificate


def test_status_names_machine_labels_made_by_a_model_that_is_no_longer_the_champion(project):
    # After `models rollback` to v4, v5's machine labels were exported and certified and
    # status said nothing of them (a user's review).
    from pipeline.status import other_models_warning

    proj, _ = project
    keys = [i.key for i in proj.store.items()]
    proj.store.add_labels([NewLabel(k, "3", "machine", model_version="5", confidence=0.99)
                           for k in keys[:7]] + [NewLabel(keys[7], "3", "human", who="a")])
    assert other_models_warning(proj.store, {"version": "5"}) == []
    assert other_models_warning(proj.store, None) == []
    [warning] = other_models_warning(proj.store, {"version": "4"})
    assert warning.startswith("7 machine label(s) in force were made by a model that is not "
                              "the champion (v4): v5 (7)")
