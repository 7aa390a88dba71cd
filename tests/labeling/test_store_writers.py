"""Two processes writing labels to one store at once (a person's answers synced while a round
writes machine labels): on SQLite and on PostgreSQL, every item ends with one label in force,
and no machine label replaces a person's."""

import subprocess
import sys
import textwrap
import time
from collections import Counter

from sqlalchemy import select

from labeling.migrations import SCHEMA_VERSION
from labeling.schema import Item, Label
from labeling.store import LabelStore, NewItem

N_ITEMS, BATCH, PASSES = 300, 30, 4

# Writes SOURCE labels to every item, BATCH per transaction, PASSES times over (a new model
# version or a changed answer each pass), starting when the go file appears.
WRITER = textwrap.dedent(f"""
    import sys, time
    from pathlib import Path
    from labeling.store import LabelStore, NewLabel
    url, source, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    store = LabelStore(url)
    keys = sorted(i.key for i in store.items())
    while not go.exists():
        time.sleep(0.005)
    for p in range({PASSES}):
        order = keys if source == "machine" else keys[::-1]  # they meet in the middle
        for start in range(0, len(order), {BATCH}):
            chunk = order[start:start + {BATCH}]
            store.add_labels([NewLabel(k, str((p + i) % 3), source, who="w",
                                       model_version=f"v{{p}}" if source == "machine" else None)
                              for i, k in enumerate(chunk, start)])
    store.close()
""")


def test_two_writers_leave_one_label_in_force_and_people_outrank_machines(store_location,
                                                                          tmp_path):
    store = LabelStore(store_location)
    store.add_items(NewItem(f"sha256:{n:064x}", f"/img/{n}.png", 10, 8, 8)
                    for n in range(N_ITEMS))
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(store_location), source,
                                 str(go)], stderr=subprocess.PIPE, text=True)
               for source in ("machine", "human")]
    time.sleep(2.0)  # both have opened the store
    go.touch()
    results = [(w.wait(timeout=300), w.stderr.read()) for w in writers]
    for code, err in results:
        assert code == 0, err[-3000:]

    with store.transaction() as s:
        in_force = Counter(s.scalars(select(Item.key).join(Label, Label.item_id == Item.id)
                                     .where(Label.superseded_at.is_(None))))
    assert set(in_force.values()) == {1} and len(in_force) == N_ITEMS
    current = store.current_labels()
    # The person labeled every item, so every item's label is theirs, whatever the order.
    assert Counter(v.source for v in current.values()) == {"human": N_ITEMS}
    # ... and the person's last answer (their pass PASSES - 1, in their order).
    assert [current[k].label for k in sorted(current)[::-1]] == [
        str((PASSES - 1 + i) % 3) for i in range(N_ITEMS)]
    store.close()


def test_processes_opening_a_new_store_at_once_all_open_it(store_location):
    code = "import sys; from labeling.store import LabelStore; LabelStore(sys.argv[1]).close()"
    openers = [subprocess.Popen([sys.executable, "-c", code, str(store_location)],
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for code, err in [(p.wait(timeout=120), p.stderr.read()) for p in openers]:
        assert code == 0, err[-3000:]
    store = LabelStore(store_location)
    assert store.schema_found == SCHEMA_VERSION and store.count_items() == 0
    store.close()
