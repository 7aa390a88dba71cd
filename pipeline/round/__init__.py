"""One round of the loop: the step table (``steps.py``) and one module per step, in the order
they run: sync, train, promote, predict, accept, select, push, monitor, tune. ``labeled.py``
and ``session.py`` hold what the steps share."""
