"""Several people on one task, through real annotator accounts on the real server: accounts,
each person's answer kept, majority and ties, second opinions, the simulated crowd."""

from __future__ import annotations

import itertools
import os
import stat

import pytest

from labeling.selections import Pick, record_picks
from labeling.studio.accounts import _sign_up, add_annotator, annotator_key, list_annotators
from labeling.studio.connection import connect
from labeling.studio.crowd import CrowdMember, simulate_crowd
from labeling.studio.errors import StudioError
from labeling.studio.opinions import (
    asked_overlaps,
    current_votes,
    human_answers,
    plan,
    request_opinions,
    uncounted_answers,
)
from labeling.studio.push import PushItem, push_tasks
from labeling.studio.sync import sync_annotations
from labeling.tasks.classification import choice_result
from pipeline.round.labeled import ties_nobody_can_break, unresolved_held_out

pytestmark = pytest.mark.integration
_strangers = itertools.count()


def _answer(conn, task_id: int, label: str) -> None:
    conn.client.annotations.create(id=task_id, result=choice_result(label))


def test_an_account_has_its_own_login_and_private_key_files(studio, accounts, tmp_path):
    (one, conn), = accounts(1)
    assert conn.user_id == one.user_id != studio.user_id
    assert conn.user_email == one.email
    for path in (one.key_file, one.password_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [a.name for a in list_annotators(tmp_path)] == [one.name]
    assert annotator_key(one) not in repr(one)


def test_a_taken_name_an_unreadable_key_and_a_bad_name_are_clear_errors(studio, accounts,
                                                                        tmp_path, ledger):
    (one, _), = accounts(1)
    for folder, name, message in ((tmp_path, one.name, "exists already"),
                                  (tmp_path / "elsewhere", one.name, "has a user .* already"),
                                  (tmp_path, "Bad Name!", "lowercase letters")):
        with pytest.raises(StudioError, match=message) as err:
            add_annotator(studio, folder, name)
        ledger.bad_input(f"annotator name {name!r}", outcome=f"refused: {err.value}")
    one.key_file.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads any file; then take the file away instead
            with pytest.raises(StudioError, match="cannot be read"):
                annotator_key(one)
        one.key_file.rename(one.key_file.with_suffix(".gone"))
        with pytest.raises(StudioError, match="key file of annotator .* cannot be read") as err:
            annotator_key(one)
        ledger.bad_input("annotator key file missing", outcome=f"refused: {err.value}")
    finally:
        one.key_file.with_suffix(".gone").rename(one.key_file)
        one.key_file.chmod(0o600)
    assert [a.name for a in list_annotators(tmp_path)] == [one.name]  # nothing lost


def _kept_password_and_account(studio, tmp_path, prefix: str, kept: str, used: str) -> str:
    """An annotator name whose password file keeps ``kept`` (an add that did not finish) and
    whose Label Studio account was signed up with ``used``; returns the name."""
    name = f"{prefix}{os.getpid()}x{next(_strangers)}"
    folder = tmp_path / "annotators"
    folder.mkdir()
    (folder / f"{name}.password").write_text(kept)
    invite = studio.get_json("api/invite", action="reading the invite link")
    _sign_up(studio.url, str(invite["invite_url"]), f"{name}@annotators.labelloop.local", used,
             timeout=30)
    return name


def test_an_add_killed_after_the_account_was_made_is_finished_by_the_next_add(studio, tmp_path):
    # As `studio add-annotator` killed between Label Studio's signup and its record: the
    # account exists with the password written first, no key or record. The next add of the
    # name logs in with it instead of refusing a name nobody can use.
    name = _kept_password_and_account(studio, tmp_path, "late", "a-pending-password-123",
                                      "a-pending-password-123")
    made = add_annotator(studio, tmp_path, name)
    assert [a.name for a in list_annotators(tmp_path)] == [name]
    assert connect(studio.url, annotator_key(made)).user_email == made.email
    with pytest.raises(StudioError, match="exists already"):
        add_annotator(studio, tmp_path, name)


def test_a_kept_password_that_does_not_open_the_account_names_the_file_to_delete(
        studio, tmp_path):
    # The account was made by someone else (or its password changed) after an add that did
    # not finish: logging in fails, and the message says which file to delete.
    name = _kept_password_and_account(studio, tmp_path, "stale", "a-stale-password-123",
                                      "someone-elses-password-456")
    with pytest.raises(StudioError, match=f"delete {tmp_path / 'annotators' / name}.password"):
        add_annotator(studio, tmp_path, name)
    assert list_annotators(tmp_path) == []


def test_three_people_on_one_task_majority_ties_and_a_second_answer_counting_once(
        studio, store, project, make_items, accounts):
    items = make_items(2)
    push_tasks(studio, store, project, [PushItem(i.key, i.path) for i in items],
               model_version="m1")
    tasks = store.tasks(project.id)
    first, second = (tasks[i.key] for i in items)
    (a, ca), (b, cb), (c, cc) = accounts(3)
    for conn, label in ((ca, "cat"), (cb, "cat"), (cc, "dog")):
        _answer(conn, first, label)
    _answer(ca, second, "cat")
    _answer(cb, second, "dog")
    report = sync_annotations(studio, store, project)
    votes = current_votes(store, project.id)
    assert votes[items[0].key] == {a.email: "cat", b.email: "cat", c.email: "dog"}
    label = store.current_labels()[items[0].key]
    assert label.label == "cat" and label.extra["votes"] == {"cat": 2, "dog": 1}
    assert items[1].key in report.disagreements  # a tie is held, never a label
    assert items[1].key not in store.current_labels()
    record_picks(store, [Pick(i.key, "random", holdout=True) for i in items], round_id=None)
    # Held out, the tie stays in the evaluation as a disagreement (pipeline.round.accept).
    assert unresolved_held_out(store) == {items[1].key}
    # ... also once its task is gone (the project deleted in Label Studio, say): the votes
    # were given (the tie was dropped, and the machine labeled the item).
    store.mark_project_deleted(project.id)
    assert unresolved_held_out(store) == {items[1].key}
    _answer(ca, second, "dog")  # the same person again: their latest counts, once
    sync_annotations(studio, store, project)
    assert current_votes(store, project.id)[items[1].key] == {a.email: "dog", b.email: "dog"}
    assert unresolved_held_out(store) == set()  # broken: a label like any other
    assert store.current_labels()[items[1].key].extra["votes"] == {"dog": 2}
    assert human_answers(store) == 6  # every answer is a cost, the repeated one too


def test_a_person_who_answered_twice_has_the_vote_of_the_answer_the_label_counts(
        studio, store, project, make_items, accounts):
    # The label took the person's last updated answer and the votes (second opinions, the
    # people's error, annotator quality) their last created one: after an edit of the older
    # answer the two differed.
    items = make_items(1)
    push_tasks(studio, store, project, [PushItem(i.key, i.path) for i in items],
               model_version="m1")
    task = store.tasks(project.id)[items[0].key]
    (a, ca), = accounts(1)
    older = ca.client.annotations.create(id=task, result=choice_result("cat"))
    ca.client.annotations.create(id=task, result=choice_result("dog"))
    ca.client.annotations.update(id=older.id, result=choice_result("cat"))
    sync_annotations(studio, store, project)
    assert store.current_labels()[items[0].key].label == "cat"
    assert current_votes(store, project.id)[items[0].key] == {a.email: "cat"}
    # Their latest answer refused: no vote, and Label Studio's overlap must count all three
    # of their answers as no person (a raise for one more person closed the task unanswered).
    ca.client.annotations.create(id=task, result=choice_result("horse"))
    sync_annotations(studio, store, project)
    assert items[0].key not in current_votes(store, project.id)
    assert uncounted_answers(store, project.id, [task]) == {task: 3}


def test_people_who_disagree_refute_the_certificate_that_assumes_them_right(
        studio, store, project, make_items, accounts):
    # Accounts added to a project that kept reference_error = 0: the certificate read
    # "wrong labels <= 0.39%" while 8% of the people's labels were wrong, and said nothing.
    from pipeline.certify import certificate, describe

    accept = {"thresholds": {"per_class": [
        {"label": "cat", "threshold": 0.9, "error_upper_bound": 0.01}]}}
    items = make_items(2)
    push_tasks(studio, store, project, [PushItem(i.key, i.path) for i in items],
               model_version="m1")
    tasks = store.tasks(project.id)
    (_, ca), (_, cb) = accounts(2)
    for conn in (ca, cb):
        _answer(conn, tasks[items[0].key], "cat")  # agreeing people refute nothing
    sync_annotations(studio, store, project)
    assert certificate(store, accept, reference_error=0, confidence=0.95)["wrong_ub"] == 0.0
    _answer(ca, tasks[items[1].key], "cat")
    _answer(cb, tasks[items[1].key], "dog")
    sync_annotations(studio, store, project)
    cert = certificate(store, accept, reference_error=0, confidence=0.95)
    assert cert["wrong_ub"] is None
    assert (cert["people_disagreed"], cert["answered_by_several"]) == (1, 2)
    assert ("no error bound (people gave different answers on 1 of the 2 item(s) several of "
            "them answered") in describe(cert)
    assert 'reference_error = "measured"' in describe(cert)
    # A bound on their error is an assumption the answers do not refute: it stands.
    assert certificate(store, accept, reference_error=0.05, confidence=0.95)["wrong_ub"] > 0


def test_a_held_out_answer_that_differs_from_the_model_gets_another_person(
        studio, store, project, make_items, accounts):
    items = make_items(3)
    record_picks(store, [Pick(i.key, "random", holdout=True) for i in items[:2]] +
                 [Pick(items[2].key, "strategy")], round_id=None)
    push_tasks(studio, store, project, [PushItem(i.key, i.path, "cat", 0.6) for i in items],
               model_version="m1")
    tasks = store.tasks(project.id)
    (a, ca), (b, cb) = accounts(2)
    _answer(ca, tasks[items[0].key], "dog")  # differs from the model: a second opinion
    _answer(ca, tasks[items[1].key], "cat")  # agrees: none
    _answer(ca, tasks[items[2].key], "dog")  # not held out: none
    sync_annotations(studio, store, project)
    model = {i.key: "cat" for i in items}
    held = {items[0].key, items[1].key}
    requests = plan(current_votes(store, project.id), model, held, tasks,
                    asked_overlaps(store, project.id))
    assert [(r.key, r.overlap) for r in requests] == [(items[0].key, 2)]
    assert request_opinions(studio, store, project, requests) == 1
    assert studio.client.tasks.get(id=tasks[items[0].key]).overlap == 2
    assert studio.client.tasks.get(id=tasks[items[1].key]).overlap == 1
    # Planned again, nothing is asked twice.
    assert plan(current_votes(store, project.id), model, held, tasks,
                asked_overlaps(store, project.id)) == []
    members = [CrowdMember(x.name, x.user_id, 0.0, skip_rate=0.0) for x in (a, b)]
    truth = {items[0].key: "cat", items[1].key: "cat", items[2].key: "dog"}
    done = simulate_crowd({a.name: ca, b.name: cb}, project, members, truth, seed=1)
    assert done.answered == {a.name: 0, b.name: 1}  # a different person, only there
    answers = studio.client.annotations.list(id=tasks[items[0].key])
    assert sorted(x.completed_by for x in answers) == sorted([a.user_id, b.user_id])
    sync_annotations(studio, store, project)
    # Now a tie between two people: a third is asked.
    assert items[0].key not in store.current_labels()
    third = plan(current_votes(store, project.id), model, held, tasks,
                 asked_overlaps(store, project.id))
    assert [(r.key, r.overlap) for r in third] == [(items[0].key, 3)]


def test_a_skipped_second_opinion_goes_to_yet_another_person(studio, store, project,
                                                            make_items, accounts):
    # Label Studio's default skip queue serves a skipped task to others: the simulated crowd
    # must too, or a raised task closes after one answer and one skip, never adjudicated.
    items = make_items(1)
    push_tasks(studio, store, project, [PushItem(items[0].key, items[0].path)],
               model_version="m1")
    task = store.tasks(project.id)[items[0].key]
    (a, ca), (b, cb), (c, cc) = accounts(3)
    _answer(ca, task, "dog")
    studio.client.tasks.update(id=task, overlap=2, is_labeled=False)
    truth = {items[0].key: "cat"}
    conns = {a.name: ca, b.name: cb, c.name: cc}
    skipper = CrowdMember(b.name, b.user_id, 0.0, skip_rate=1.0)
    skipped = simulate_crowd(conns, project, [skipper], truth, seed=3)
    assert skipped.skipped[b.name] == 1 and skipped.total == 0
    members = [CrowdMember(x.name, x.user_id, 0.0, skip_rate=0.0) for x in (a, b, c)]
    done = simulate_crowd(conns, project, members, truth, seed=3)
    assert done.answered == {a.name: 0, b.name: 0, c.name: 1}  # neither a nor the skipper
    sync_annotations(studio, store, project)
    assert current_votes(store, project.id)[items[0].key] == {a.email: "dog", c.email: "cat"}
    again = simulate_crowd(conns, project, members, truth, seed=3)
    assert again.total == 0 and sum(again.skipped.values()) == 0  # the overlap is filled


def test_a_person_who_answered_twice_does_not_fill_a_raise_for_other_people(
        studio, store, project, make_items, accounts):
    # Label Studio closes a task when its answers reach the overlap; labelloop counts people.
    # Two people more, asked at once, must both come, though one person answered twice.
    items = make_items(1)
    record_picks(store, [Pick(items[0].key, "random", holdout=True)], round_id=None)
    push_tasks(studio, store, project, [PushItem(items[0].key, items[0].path)],
               model_version="m1")
    task = store.tasks(project.id)[items[0].key]
    (a, ca), (b, cb), (c, cc) = accounts(3)
    _answer(ca, task, "dog")
    _answer(ca, task, "dog")
    sync_annotations(studio, store, project)
    votes = current_votes(store, project.id)
    assert list(votes[items[0].key]) == [a.email]  # one person
    requests = plan(votes, {items[0].key: "cat"}, {items[0].key}, {items[0].key: task},
                    asked_overlaps(store, project.id), sure={items[0].key})
    assert [(r.key, r.overlap) for r in requests] == [(items[0].key, 3)]
    request_opinions(studio, store, project, requests)
    assert asked_overlaps(store, project.id) == {items[0].key: 3}  # in people
    members = [CrowdMember(x.name, x.user_id, 0.0, skip_rate=0.0) for x in (a, b, c)]
    done = simulate_crowd({a.name: ca, b.name: cb, c.name: cc}, project, members,
                          {items[0].key: "cat"}, seed=2)
    assert done.answered == {a.name: 0, b.name: 1, c.name: 1}
    sync_annotations(studio, store, project)
    assert current_votes(store, project.id)[items[0].key] == {
        a.email: "dog", b.email: "cat", c.email: "cat"}
    assert store.current_labels()[items[0].key].label == "cat"


def test_an_answer_from_a_user_labelloop_did_not_make_counts_as_that_person(
        studio, store, project, make_items, studio_server, tmp_path):
    items = make_items(1)
    push_tasks(studio, store, project, [PushItem(items[0].key, items[0].path)],
               model_version="m1")
    # An account made outside labelloop's folder: the server knows it, labelloop does not.
    stranger = add_annotator(studio, tmp_path / "someone-else",
                             f"s{os.getpid()}x{next(_strangers)}")
    conn = connect(studio.url, annotator_key(stranger), timeout=120)
    _answer(conn, store.tasks(project.id)[items[0].key], "dog")
    sync_annotations(studio, store, project)
    label = store.current_labels()[items[0].key]
    assert (label.label, label.who) == ("dog", stranger.email)


def test_a_held_out_tie_that_every_account_has_seen_is_counted(studio, store, project,
                                                                 make_items, accounts):
    # labelloop status warns about these: each counts against the model until someone else
    # answers, and with a small crowd one skip is enough to leave nobody.
    items = make_items(2)
    record_picks(store, [Pick(i.key, "random", holdout=True) for i in items], round_id=None)
    push_tasks(studio, store, project, [PushItem(i.key, i.path) for i in items],
               model_version="m1")
    tasks = store.tasks(project.id)
    (a, ca), (b, cb), (c, cc) = accounts(3)
    for task in tasks.values():
        _answer(ca, task, "dog")
        _answer(cb, task, "cat")
    cc.client.annotations.create(id=tasks[items[0].key], result=[], was_cancelled=True)
    # The admin is nobody's account: their skip leaves the second tie to account c.
    studio.client.annotations.create(id=tasks[items[1].key], result=[], was_cancelled=True)
    sync_annotations(studio, store, project)
    assert unresolved_held_out(store) == {i.key for i in items}
    # Three accounts: the first tie was answered or skipped by all three, the second not yet.
    assert ties_nobody_can_break(store, {a.email, b.email, c.email}) == 1
    assert ties_nobody_can_break(store, {a.email, b.email}) == 2
    assert ties_nobody_can_break(store, {a.email, b.email, c.email, "d@x.test"}) == 0
    assert ties_nobody_can_break(store, set()) == 0  # people labelloop does not count
