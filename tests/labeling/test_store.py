"""The label store keeps every label, lets people outrank machines, and writes all or nothing;
each test runs on SQLite and on a throwaway PostgreSQL (``store_location``, tests/conftest.py)."""

import signal
import subprocess
import sys
import textwrap

import pytest

from labeling.store import LabelStore, NewItem, NewLabel, StoreError, StoreUnavailable


def _item(n: int) -> NewItem:
    return NewItem(key=f"sha256:{n:064x}", path=f"/data/img{n}.png", size_bytes=100 + n,
                   width=28, height=28)


@pytest.fixture
def store(store_location):
    s = LabelStore(store_location)
    s.add_items([_item(i) for i in range(5)])
    yield s
    s.close()


def test_items_are_deduplicated_by_content_key(store):
    again = store.add_items([_item(0), NewItem(_item(1).key, "/other/name.png", 101, 28, 28),
                             _item(9)])
    assert again == [_item(9).key]
    assert len(store.items()) == 6
    # The first path seen for a content key is kept.
    assert store.item(_item(1).key).path == "/data/img1.png"


def test_label_provenance_is_kept(store):
    key = _item(0).key
    round_id = store.start_round()
    store.add_labels([NewLabel(key, "cat", "machine", model_version="v3", confidence=0.91,
                               round_id=round_id)])
    lab = store.current_labels()[key]
    assert (lab.label, lab.source, lab.model_version, lab.round_id) == ("cat", "machine", "v3",
                                                                        round_id)
    assert lab.confidence == pytest.approx(0.91)
    assert lab.created_at is not None and lab.superseded_at is None


def test_human_label_outranks_machine_and_machine_never_replaces_it(store):
    key = _item(1).key
    store.add_labels([NewLabel(key, "cat", "machine", model_version="v1", confidence=0.7)])
    store.add_labels([NewLabel(key, "dog", "human", who="ann@example.com")])
    result = store.add_labels([NewLabel(key, "cat", "machine", model_version="v2",
                                        confidence=0.99)])
    assert result.refused == [key] and result.written == []
    current = store.current_labels()[key]
    assert (current.label, current.source, current.who) == ("dog", "human", "ann@example.com")


def test_history_keeps_every_superseded_label(store):
    key = _item(2).key
    store.add_labels([NewLabel(key, "cat", "machine", model_version="v1")])
    store.add_labels([NewLabel(key, "dog", "machine", model_version="v2")])
    store.add_labels([NewLabel(key, "cat", "human", who="a")])
    store.add_labels([NewLabel(key, "dog", "human", who="b")])
    history = store.history(key)
    assert [(h.label, h.source) for h in history] == [
        ("cat", "machine"), ("dog", "machine"), ("cat", "human"), ("dog", "human")]
    assert [h.superseded_at is None for h in history] == [False, False, False, True]


def test_repeating_the_current_label_writes_nothing(store):
    key = _item(3).key
    store.add_labels([NewLabel(key, "cat", "human", who="a")])
    result = store.add_labels([NewLabel(key, "cat", "human", who="a")])
    assert result.unchanged == [key]
    assert len(store.history(key)) == 1


def test_bad_batch_writes_nothing(store):
    good, missing = _item(0).key, "sha256:" + "f" * 64
    with pytest.raises(StoreError, match="unknown item"):
        store.add_labels([NewLabel(good, "cat", "human"), NewLabel(missing, "cat", "human")])
    with pytest.raises(StoreError, match="not a class"):
        store.add_labels([NewLabel(good, "cat", "human"), NewLabel(good, "zebra", "human")],
                         classes=["cat", "dog"])
    with pytest.raises(StoreError, match="unknown label source"):
        store.add_labels([NewLabel(good, "cat", "oracle")])
    assert store.current_labels() == {}


def test_retracted_human_label_leaves_item_unlabeled_with_history(store):
    key = _item(4).key
    store.add_labels([NewLabel(key, "cat", "human", who="a")])
    assert store.retract_label(key, source="human")
    assert key not in store.current_labels()
    assert len(store.history(key)) == 1


def test_tasks_are_one_per_item_and_project(store):
    k0, k1 = _item(0).key, _item(1).key
    store.record_tasks(7, {k0: 100, k1: 101}, model_version="v1")
    store.record_tasks(7, {k0: 100})
    assert store.tasks(7) == {k0: 100, k1: 101}
    store.record_tasks(8, {k1: 200})
    store.mark_project_deleted(8)
    assert store.tasks(8) == {} and store.tasks(8, include_deleted=True) == {k1: 200}
    assert store.tasks(7) == {k0: 100, k1: 101}


def test_missing_store_folder_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        LabelStore(tmp_path / "nope" / "labels.db")


def test_process_killed_mid_transaction_leaves_previous_state(store_location, ledger):
    """SIGKILL while a big label batch is being written: afterwards, all or nothing."""
    db = store_location
    store = LabelStore(db)
    store.add_items([_item(i) for i in range(2000)])
    store.add_labels([NewLabel(_item(0).key, "cat", "human", who="a")])
    script = textwrap.dedent(f"""
        import os, signal
        from sqlalchemy import event
        from labeling.store import LabelStore, NewLabel
        store = LabelStore({str(db)!r})
        written = 0
        def die_mid_batch(conn, cursor, statement, *args):
            # SQLite inserts a row per statement, PostgreSQL up to 1,000: count rows, and die
            # once half the batch is written inside the still open transaction.
            global written
            if statement.startswith("INSERT INTO labels"):
                written += max(cursor.rowcount, 1)
                if written >= 1000:
                    os.kill(os.getpid(), signal.SIGKILL)
        event.listen(store.engine, "after_cursor_execute", die_mid_batch)
        keys = [f"sha256:{{n:064x}}" for n in range(2000)]
        store.add_labels([NewLabel(k, "dog", "machine", model_version="v9") for k in keys])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    reopened = LabelStore(db)
    current = reopened.current_labels()
    ledger.fault("SIGKILL in the middle of a 2,000-label write", outcome="all or nothing: the "
                 "previous state", lost_labels=0 if _item(0).key in current else 1,
                 duplicate_tasks=0)
    assert {k: (v.label, v.source) for k, v in current.items()} == {
        _item(0).key: ("cat", "human")}
    # The killed writer's batch can be written whole afterwards.
    result = reopened.add_labels([NewLabel(_item(n).key, "dog", "machine", model_version="v9")
                                  for n in range(1, 2000)])
    assert len(result.written) == 1999
    assert len(reopened.current_labels()) == 2000
    reopened.close()
    store.close()


def test_a_file_that_is_no_database_is_one_clear_error(tmp_path):
    # A store file overwritten by something else (a copy gone wrong, another program's file):
    # the user gets one line naming the store, not SQLAlchemy's traceback.
    path = tmp_path / "labels.db"
    path.write_text("garbage, not SQLite\n")
    with pytest.raises(StoreError, match=r"labels\.db cannot be opened: file is not a database"):
        LabelStore(path)
    assert path.read_text() == "garbage, not SQLite\n"  # left as it was
    # An empty file is what a truncation leaves; SQLite would take it for a new store, and
    # status and export then showed a project with nothing in it.
    path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"labels\.db is an empty file \(0 bytes\)"):
        LabelStore(path)
    assert path.read_bytes() == b""
    path.unlink()
    LabelStore(path).close()  # a new store where there was none
    assert path.stat().st_size > 0


def test_a_store_outlives_its_servers_connections_ending(postgres_url):
    # A PostgreSQL restart ended the pooled connections; the first query after it failed
    # ("terminating connection due to administrator command") and stopped the scheduled loop
    # that had waited the outage out.
    from sqlalchemy import create_engine, text

    store = LabelStore(postgres_url)
    try:
        store.add_items([NewItem("sha256:a", "/x/a.png", 1, 1, 1)])
        admin = create_engine(postgres_url)
        with admin.begin() as conn:
            ended = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        admin.dispose()
        assert ended >= 1
        assert [i.key for i in store.items()] == ["sha256:a"]
    finally:
        store.close()


def test_a_store_that_stops_answering_mid_round_is_one_retryable_error(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    store.add_items([NewItem("sha256:a", "/x/a.png", 1, 1, 1)])
    store.close()  # the pool's connections go; the file goes with the disk it was on
    (tmp_path / "labels.db").unlink()
    (tmp_path / "labels.db").mkdir()
    with pytest.raises(StoreUnavailable, match="label store at sqlite:.* failed: "
                                               "unable to open database file \\(that write"):
        store.items()


def test_picks_waiting_for_people_leave_out_the_answered_skipped_and_disputed(store):
    from labeling.schema import SELECTION_REASONS
    from labeling.selections import Pick, record_picks, unanswered_picks

    items = [_item(n) for n in range(20, 24)]
    store.add_items(items)
    record_picks(store, [Pick(i.key, SELECTION_REASONS[0]) for i in items], round_id=None)
    store.add_labels([NewLabel(items[0].key, "cat", "human", who="a")])
    store.set_status([items[1].key], "skipped")
    store.set_status([items[2].key], "disagreement")
    # Tasks sent by hand wait too; answered or skipped ones, or deleted ones, do not.
    from labeling.selections import unpicked_tasks_waiting

    hand = [_item(n) for n in range(30, 34)]
    store.add_items(hand)
    store.record_tasks(9, {i.key: 900 + n for n, i in enumerate(hand)}, model_version="")
    store.add_labels([NewLabel(hand[0].key, "cat", "human", who="a")])
    store.set_status([hand[1].key], "skipped")
    store.mark_project_deleted(9)
    assert unpicked_tasks_waiting(store) == 0
    store.record_tasks(10, {hand[2].key: 1002, hand[3].key: 1003,
                            items[3].key: 1004}, model_version="")  # a pick's task: counted apart
    assert unpicked_tasks_waiting(store) == 2
    # `status` and the round's "next:" line counted a skipped item as waiting.
    assert [k for k, _, _ in unanswered_picks(store)] == [items[3].key]
