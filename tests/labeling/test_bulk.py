"""Large label writes take the bulk paths (one scan instead of chunked IN queries, the driver's
executemany by id): the store ends the same as through the small-write path, on SQLite and on
PostgreSQL. The threshold is lowered so that a few hundred labels take the bulk path."""

import pytest
from sqlalchemy import select

from labeling import bulk
from labeling.schema import Item
from labeling.store import LabelStore, NewItem, NewLabel

KEYS = [f"sha256:{n:064x}" for n in range(700)]  # more than one IN chunk


def _history_after_two_rounds(location) -> tuple[dict, dict, list]:
    """Round 1: machine labels v1 on every item, a person on a tenth. Round 2 (after a
    promotion): v2 on every item, one class changed in five. Returns the labels in force, the
    refused and unchanged keys of round 2, and one item's whole history."""
    store = LabelStore(location)
    store.add_items(NewItem(k, f"/img/{i}.png", 10, 8, 8) for i, k in enumerate(KEYS))
    store.add_labels([NewLabel(k, "cat", "machine", model_version="1", confidence=0.9,
                               extra={"note": i} if i % 7 == 0 else {})
                      for i, k in enumerate(KEYS)])
    store.add_labels([NewLabel(k, "dog", "human", who="ann") for k in KEYS[::10]])
    second = [NewLabel(k, "dog" if i % 5 == 0 else "cat", "machine", model_version="2",
                       confidence=0.95) for i, k in enumerate(KEYS)]
    second += [NewLabel(KEYS[1], "dog", "machine", model_version="2", confidence=0.95)]
    result = store.add_labels(second)
    again = store.add_labels([NewLabel(KEYS[3], "cat", "machine", model_version="2",
                                       confidence=0.95)])
    out = ({k: (r.label, r.source, r.model_version) for k, r in store.current_labels().items()},
           {"refused": sorted(result.refused), "unchanged": sorted(again.unchanged),
            "written": len(result.written)},
           [(r.label, r.model_version, r.superseded_at is None) for r in store.history(KEYS[7])])
    store.close()
    return out


@pytest.mark.parametrize("scan_at", [1, 10**9], ids=["bulk", "chunked"])
def test_a_large_write_ends_as_a_small_one_does(store_location, monkeypatch, scan_at):
    monkeypatch.setattr(bulk, "SCAN_AT", scan_at)
    current, write, history = _history_after_two_rounds(store_location)
    people = set(KEYS[::10])
    assert write["refused"] == sorted(people)  # a person outranks the machine, on both paths
    assert write["unchanged"] == [KEYS[3]]
    assert write["written"] == len(KEYS) - len(people) + 1  # KEYS[1] twice in one write
    assert all(current[k] == ("dog", "human", None) for k in people)
    assert current[KEYS[5]] == ("dog", "machine", "2")
    assert current[KEYS[1]] == ("dog", "machine", "2")  # the later of the two in one write
    assert current[KEYS[7]] == ("cat", "machine", "2")
    assert history == [("cat", "1", False), ("cat", "2", True)]  # superseded, not overwritten


def test_rows_where_in_finds_the_same_rows_either_way(store_location, monkeypatch):
    store = LabelStore(store_location)
    store.add_items(NewItem(k, f"/img/{i}.png", 10, 8, 8) for i, k in enumerate(KEYS))
    wanted = KEYS[::3] + ["sha256:not-an-item"]
    found = {}
    for scan_at in (1, 10**9):
        monkeypatch.setattr(bulk, "SCAN_AT", scan_at)
        with store.transaction() as s:
            query = select(Item.key, Item.path)
            found[scan_at] = sorted(tuple(r) for r in bulk.rows_where_in(s, query, Item.key,
                                                                          wanted))
    assert found[1] == found[10**9]
    assert [k for k, _ in found[1]] == sorted(KEYS[::3])
    store.close()
