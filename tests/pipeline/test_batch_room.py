"""How much of a batch a round may pick while earlier picks wait for people
(``pipeline.round.select.batch_room``): the rest of one batch, once half of it is free or what
is left of the pool fits; nothing before the cold start's first batch is answered."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.round import select as select_step

MODEL = {"file": "round3-v2.npz"}  # a round with a champion's predictions


@pytest.mark.parametrize("waiting,candidates,predicted,room", [
    (0, 1000, MODEL, 100),   # nothing waits: a whole batch
    (40, 1000, MODEL, 60),   # the rest of the batch
    (50, 1000, MODEL, 50),   # half a batch free: picked
    (60, 1000, MODEL, 0),    # less than half free: a room of 40 waits for more answers
    (100, 1000, MODEL, 0),
    (80, 20, MODEL, 20),     # the pool's last 20 fit in the room: picked
    (90, 20, MODEL, 0),      # they do not
    (0, 1000, {}, 100),      # the cold start
    (10, 1000, {}, 0),       # its first batch still waits
])
def test_a_round_picks_the_rest_of_one_batch(monkeypatch, waiting, candidates, predicted, room):
    monkeypatch.setattr(select_step, "waiting_picks", lambda project: waiting)
    project = SimpleNamespace(config=SimpleNamespace(loop=SimpleNamespace(batch_size=100)))
    got, record = select_step.batch_room(project, predicted, candidates)
    assert got == room
    if room == 0:
        assert record == {"picked": 0, "waiting": waiting,
                          "reason": f"{waiting} picked item(s) wait for people in Label Studio: "
                                    f"the next batch is picked as they are answered"}
    else:
        assert record is None
