"""The delivered dataset's certificate: counts by who labeled, and the bound on wrong labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.bounds import wrong_count_upper_bound
from labeling.store import LabelStore, NewLabel
from pipeline.certify import certificate, describe, latest_accept
from pipeline.ingest import ingest_folder


@pytest.fixture
def store(tmp_path):
    for i in range(10):
        Image.fromarray(np.full((4, 4), 20 * i, np.uint8), mode="L").save(tmp_path / f"{i}.png")
    s = LabelStore(tmp_path / "labels.db")
    ingest_folder(s, tmp_path)
    keys = [i.key for i in s.items()]
    s.add_labels([NewLabel(k, "a", "human") for k in keys[:4]] +
                 [NewLabel(k, "b", "machine", model_version="1") for k in keys[4:8]])
    yield s
    s.close()


def _accept(bound):
    # The certificate counts the machine labels at the target the scan tested (1 - 0.95),
    # not at the lower bound found at the chosen cut (the scan's guarantee does not cover it).
    return {"thresholds": {"target_precision": 1.0 - bound, "per_class": [
        {"label": "a", "threshold": 0.9, "error_upper_bound": bound / 2},
        {"label": "b", "threshold": None, "error_upper_bound": None}]}}


def test_the_bound_mixes_machine_and_human_error_over_the_delivered_labels(store):
    cert = certificate(store, _accept(0.05), reference_error=0.01, confidence=0.95)
    assert (cert["delivered"], cert["human"], cert["machine"], cert["unlabeled"]) == (8, 4, 4, 2)
    assert cert["wrong_at_rates"] == pytest.approx((4 * 0.05 + 4 * 0.01) / 8)
    # The share among these 8 labels, not the rates: at 99% (a fifth of the 5% spent again),
    # 2 of the 8 may be wrong.
    assert cert["wrong_ub"] == wrong_count_upper_bound([(4, 0.05), (4, 0.01)],
                                                       confidence=0.99) / 8 == 2 / 8
    assert (cert["confidence"], cert["rates_confidence"]) == (0.94, 0.95)
    assert "people err at most 0.010" in cert["assumes"]
    line = describe(cert)
    assert "8 labels delivered (4 by people, 4 by the machine), 2 unlabeled" in line
    assert "<= 25.00% with 94% confidence" in line


def test_people_assumed_right_is_said_and_a_missing_bound_is_no_bound(store):
    cert = certificate(store, _accept(0.05), reference_error=0.0, confidence=0.9)
    assert "people's labels are right" in cert["assumes"]
    assert certificate(store, None, reference_error=0.0, confidence=0.9)["wrong_ub"] is None
    assert "no error bound yet" in describe(certificate(store, None, reference_error=0.0,
                                                        confidence=0.9))


def test_nothing_delivered_has_no_bound(tmp_path):
    # It read "0 labels delivered ...; wrong labels <= 0.00% with 95% confidence".
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(tmp_path / "0.png")
    empty = LabelStore(tmp_path / "labels.db")
    ingest_folder(empty, tmp_path)
    cert = certificate(empty, _accept(0.05), reference_error=0.0, confidence=0.95)
    empty.close()
    assert cert["delivered"] == 0 and cert["wrong_ub"] is None
    assert describe(cert) == ("0 labels delivered (0 by people, 0 by the machine), 1 unlabeled; "
                              "no error bound yet (no label is delivered)")


def test_a_human_only_delivery_is_certified_by_the_human_bound_alone(store):
    cert = certificate(store, None, reference_error=0.02, confidence=0.95, human_only=True)
    assert (cert["delivered"], cert["machine"], cert["wrong_at_rates"]) == (4, 0, 0.02)
    assert cert["wrong_ub"] == 1 / 4  # one wrong of 4 is 3.9% likely at a 2% rate


def test_the_latest_accept_record_is_the_newest_round_that_ran_it():
    rounds = [{"stats": {"accept": {"n": 1}}}, {"stats": {"accept": {"n": 2}}}, {"stats": {}}]
    assert latest_accept(rounds) == {"n": 2}
    assert latest_accept([]) is None


def test_measured_people_are_certified_by_their_label_error_not_by_rho(store):
    # rho (how often a reference repeats a wrong model label) is large and says little about
    # how often a delivered human label is wrong: the certificate takes the measured error.
    accept = {**_accept(0.02), "reference": {"rate_ub": 0.4}, "human_error": {"rate_ub": 0.08}}
    cert = certificate(store, accept, reference_error="measured", confidence=0.95)
    assert cert["human_error_ub"] == 0.08
    assert cert["wrong_at_rates"] == pytest.approx((4 * 0.02 + 4 * 0.08) / 8)
    # The people's part is most of it: the line says so, and what narrows it.
    assert "80% of it is the people's part" in describe(cert)  # 4 * 0.08 of 4 * 0.1
    accept["human_error"]["n_items"] = 40
    line = describe(certificate(store, accept, reference_error="measured", confidence=0.95))
    assert "bounded from 40 double-checked item(s)" in line and "[loop] double_check" in line
    # A record from before 2026-12-02 bounded people by rho, measured on other items.
    old = {**_accept(0.02), "reference": {"rate_ub": 0.08, "n_items": 30}}
    line = describe(certificate(store, old, reference_error="measured", confidence=0.95))
    assert "80% of it is the people's part, at the error it assumes" in line
    assert "double-checked" not in line
    accept["human_error"]["rate_ub"] = 0.01  # now the machine's part is most of it
    assert "people's part" not in describe(certificate(store, accept,
                                                       reference_error="measured",
                                                       confidence=0.95))
    unmeasured = {**accept, "human_error": {"rate_ub": None}}
    assert certificate(store, unmeasured, reference_error="measured",
                       confidence=0.95)["reason"] == "the people's error is not measured yet"


def test_an_export_that_left_labels_out_bounds_its_own_rows(store):
    # Two labeled files gone: the export writes 6 of the 8 delivered labels. The bound caps
    # the count of wrong labels, which may all be among the 6: the rows' share is larger.
    from pipeline.delivery import exported_bound

    cert = certificate(store, _accept(0.05), reference_error=0.01, confidence=0.95)
    assert exported_bound(cert, 6) == {"exported_wrong_ub": pytest.approx(cert["wrong_ub"] * 8 / 6)}
    assert exported_bound(cert, 8) == {} == exported_bound(cert, 0)
    assert exported_bound(certificate(store, None, reference_error=0.0, confidence=0.9), 6) == {}


def test_labelloop_export_with_files_gone_certifies_the_rows_it_wrote(store, tmp_path):
    # Through the command: the sidecar beside the CSV, and the line the user reads.
    import json

    from typer.testing import CliRunner

    from pipeline.cli.app import app
    from pipeline.project.config import render_config

    round_id = store.start_round()
    store.finish_round(round_id, {"accept": _accept(0.05)})
    sources = store.current_sources()
    paths = {i.key: i.path for i in store.items()}
    gone = [next(paths[k] for k, s in sources.items() if s == kind)
            for kind in ("human", "machine")]  # one labeled by people, one by the machine
    store.close()
    (tmp_path / ".labelloop").mkdir()
    (tmp_path / "labels.db").rename(tmp_path / ".labelloop" / "labels.db")
    config = render_config("demo", ("a", "b"), Path("."))
    (tmp_path / "labelloop.toml").write_text(config)
    for path in gone:
        Path(path).unlink()
    out = tmp_path / "[run] 1" / "labels.csv"  # text rich would read as markup
    result = CliRunner().invoke(app, ["export", "--format", "csv", "--out", str(out),
                                      "-c", str(tmp_path)])
    assert result.exit_code == 0, result.output
    sidecar = out.parent / "labels.certificate.json"
    cert = json.loads(sidecar.read_text())
    assert f"certificate ({sidecar}): {describe(cert)}" in result.output
    assert cert["delivered"] == 8 and cert["exported_rows"] == 6
    assert cert["exported_wrong_ub"] == pytest.approx(cert["wrong_ub"] * 8 / 6)
    assert cert["exported_wrong_ub"] > cert["wrong_ub"] > 0
    assert (f"of the 6 exported rows (fewer than the labels delivered), wrong labels <= "
            f"{100 * cert['exported_wrong_ub']:.2f}%") in result.output
    assert len(out.read_text().splitlines()) == 1 + 6
    assert "2 missing file" in result.output


def test_labels_the_export_holds_back_are_not_certified_as_delivered(store):
    # An audited machine label whose people skipped it, a disputed item, a quarantined file:
    # their labels stay in force, but no export writes them, so the certificate's delivered
    # set (and its bound's denominator) is what an export delivers.
    sources = store.current_sources()
    paths = {i.key: i.path for i in store.items()}
    machine = sorted(k for k, s in sources.items() if s == "machine")
    human = sorted(k for k, s in sources.items() if s == "human")
    store.set_status([machine[0]], "skipped")
    store.set_status([human[0]], "disagreement")
    store.quarantine(paths[human[1]], "truncated image")
    cert = certificate(store, _accept(0.05), reference_error=0.01, confidence=0.95)
    assert (cert["delivered"], cert["human"], cert["machine"]) == (5, 2, 3)
    assert cert["withheld"] == 3 and cert["unlabeled"] == 2 and cert["items"] == 10
    # The bounds cap wrong labels among all 4 machine and 4 human labels in force; the held
    # back ones are not random (hard items get skipped), so all may be among the 5 delivered.
    assert cert["wrong_at_rates"] == pytest.approx((4 * 0.05 + 4 * 0.01) / 5)
    assert cert["wrong_ub"] == wrong_count_upper_bound([(4, 0.05), (4, 0.01)],
                                                       confidence=0.99) / 5
    assert "3 labeled but held back (skipped, disputed or quarantined)" in describe(cert)
    people = certificate(store, _accept(0.05), reference_error=0.01, confidence=0.95,
                         human_only=True)
    assert (people["delivered"], people["withheld"], people["unlabeled"]) == (2, 2, 2)
    assert people["machine_not_exported"] == 4
    # The line adds up to the pool: the machine's labels are not taken for unlabeled items.
    assert ("2 labels delivered (2 by people, 0 by the machine), 2 unlabeled, 4 labeled by the "
            "machine and not exported, 2 labeled but held back") in describe(people)
    assert people["wrong_at_rates"] == pytest.approx(4 * 0.01 / 2)
    assert people["wrong_ub"] == wrong_count_upper_bound([(4, 0.01)], confidence=0.99) / 2


def test_the_fewest_answers_that_certify_a_target_are_where_the_bound_first_meets_it():
    from types import SimpleNamespace

    from labeling.bounds import error_upper_bound
    from pipeline.quickstart import items_to_certify

    loop = SimpleNamespace(target="label", target_precision=0.98, confidence_level=0.95,
                           dataset_error=0.02)
    n = items_to_certify(loop)
    assert n == 149  # the figure the loop's notes give for 2% at 95%
    assert (error_upper_bound(0, n, confidence=0.95) <= 0.02
            < error_upper_bound(0, n - 1, confidence=0.95))


def test_machine_labels_on_new_images_unlike_the_held_out_ones_count_as_wrong_until_tested(
        store, tmp_path):
    # A review dropped 60 images of another kind into a machine-labeled pool: the champion's
    # thresholds accepted them (54 wrong) and the certificate kept its 3.59% bound, which
    # rests on held-out items that held none of them; the monitor had found the drift.
    import time
    from datetime import UTC, datetime

    from pipeline.certify import _covered, cohort_checks, drifts_flagged

    def arrive(name: str, shade: int) -> list[str]:
        folder = tmp_path / name
        folder.mkdir()
        for i in range(4):
            Image.fromarray(np.full((4, 4), shade + 20 * i, np.uint8), mode="L").save(
                folder / f"{name}{i}.png")
        return [item.key for item in ingest_folder(store, folder).added]

    def moment() -> datetime:
        time.sleep(0.01)
        return datetime.now(UTC)

    start2 = moment()
    first = arrive("a", 7)  # drift found in round 3, on what arrived after round 2 began
    start3 = moment()
    second = arrive("b", 11)  # ... and in round 4, on what came after round 3 began
    start4 = moment()
    store.add_labels([NewLabel(k, "b", "machine", model_version="1")
                      for k in first[:3] + second[:2]])

    def drift(found: bool, cutoff: datetime) -> dict:
        return {"monitor": {"drift": {"computed": True, "drift": found,
                                      "cutoff": cutoff.isoformat()}}}

    rounds = [{"id": 2, "started_at": start2, "stats": {}},
              {"id": 3, "started_at": start3, "stats": drift(True, start2)},
              {"id": 4, "started_at": start4, "stats": drift(True, start3)},
              {"id": 5, "started_at": moment(), "stats": drift(False, start4)}]
    drifts = drifts_flagged(rounds)
    assert [d["round"] for d in drifts] == [3, 4]
    cert = certificate(store, _accept(0.05), reference_error=0.01, confidence=0.95,
                       drifts=drifts)
    assert cert["uncovered_machine"] == 5 and cert["drift_rounds"] == [3, 4]
    assert cert["machine"] == 9 and cert["delivered"] == 13
    assert cert["wrong_at_rates"] == pytest.approx((4 * 0.05 + 5 * 1.0 + 4 * 0.01) / 13)
    assert cert["wrong_ub"] == (5 + wrong_count_upper_bound([(4, 0.05), (4, 0.01)],
                                                            confidence=0.99)) / 13
    assert ("counted as wrong: the 5 machine label(s) on new images unlike the held-out ones "
            "(drift found in round 3, 4)") in describe(cert)
    # An accept step tested on held-out answers that hold the newer images only: the older
    # ones stay counted (they were forgotten once a newer drift was found).
    old = [i.key for i in store.items() if i.key not in set(first + second)][:6]
    newer = {**_accept(0.05), "drift_cohorts": cohort_checks(store, drifts, old + second[:2])}
    assert newer["drift_cohorts"]["3"]["validation"] == 0
    assert newer["drift_cohorts"]["4"] == {"items": 4, "pool": 18, "validation": 2,
                                           "validation_total": 8}
    cert = certificate(store, newer, reference_error=0.01, confidence=0.95, drifts=drifts)
    assert (cert["uncovered_machine"], cert["drift_rounds"]) == (3, [3])
    # Both held at their share: the bound covers them.
    both = {**_accept(0.05),
            "drift_cohorts": cohort_checks(store, drifts, old + first[:2] + second[:2])}
    cert = certificate(store, both, reference_error=0.01, confidence=0.95, drifts=drifts)
    assert "uncovered_machine" not in cert
    assert cert["wrong_at_rates"] == pytest.approx((9 * 0.05 + 4 * 0.01) / 13)
    assert drifts_flagged([rounds[0], rounds[3]]) == []  # no drift found: as before
    # At half their share of the pool their errors would weigh half in the test: not enough.
    share = {"items": 200, "pool": 1000, "validation_total": 400}
    assert not _covered({**share, "validation": 40}) and _covered({**share, "validation": 70})


def test_per_class_thresholds_tested_each_alone_certify_at_what_they_hold_together(store):
    # [loop] split_error_budget = false: each class's threshold holds at 95% alone; the two
    # given one hold together at 90% (a statistician's review: the certificate said 95%).
    from labeling.autoaccept import choose_thresholds

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1], 400)
    alone = choose_thresholds(probs, probs.argmax(1), ["a", "b"], split_budget=False)
    assert alone.to_dict()["each_alone"] and not choose_thresholds(
        probs, probs.argmax(1), ["a", "b"]).to_dict()["each_alone"]
    accept = {"thresholds": {**alone.to_dict(), "per_class": [
        {"label": c, "threshold": 0.9, "error_upper_bound": 0.01} for c in ("a", "b")]}}
    cert = certificate(store, accept, reference_error=0.01, confidence=0.95)
    assert (cert["rates_confidence"], cert["confidence"]) == (0.9, 0.89)
    assert "with 89% confidence" in describe(cert)
    # Ten classes tested each alone hold together at 50%, though one was given a threshold
    # (the one that passed, perhaps wrongly: a review's Monte Carlo): no bound, what to set.
    many = {"thresholds": {**accept["thresholds"], "per_class": [
        {"label": str(c), "threshold": 0.9 if c == 0 else None, "error_upper_bound": 0.01}
        for c in range(10)]}}
    cert = certificate(store, many, reference_error=0.01, confidence=0.95)
    assert cert["wrong_ub"] is None and "set split_error_budget = true" in cert["reason"]
