"""The store's batch lookups used by ingest: which keys exist, and leaving the quarantine (on
SQLite and on PostgreSQL)."""

from labeling.store import LabelStore, NewItem


def test_existing_keys_answers_for_many_keys_at_once(store_location):
    store = LabelStore(store_location)
    keys = [f"sha256:{n:064x}" for n in range(1200)]  # more than one query chunk
    store.add_items(NewItem(k, f"/img/{i}.png", 10, 8, 8) for i, k in enumerate(keys[::2]))
    assert store.existing_keys(keys + keys[:3]) == set(keys[::2])
    assert store.existing_keys([]) == set()
    store.close()


def test_unquarantine_removes_only_the_paths_given(store_location):
    store = LabelStore(store_location)
    store.quarantine("/img/a.png", "empty file (0 bytes)")
    store.quarantine("/img/b.png", "not an image Pillow can read", key="sha256:" + "0" * 64)
    assert store.unquarantine(["/img/b.png", "/img/never.png"]) == ["/img/b.png"]
    assert [q.path for q in store.quarantined()] == ["/img/a.png"]
    store.close()
