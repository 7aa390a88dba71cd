"""Which items people see without the model's pre-annotation, and which get two people.

- Held-out items (random and audit picks), when ``[loop] blind_references``: they are the
  reference every threshold is tested against, and a person shown the model's answer repeats
  it far more often than one who is not (anchoring). Blind, a reference repeats a wrong model
  label only when the person confuses the same two classes unprompted.
- ``blind_check``: a random share of the items picked for training (not the held-out ones),
  pushed blind and answered by two people. On them rho of blind answers is measured
  (pipeline/round/reference.py): only an item the model got wrong is a trial, and the
  uncertain items people are sent are where it errs. On a random held-out item it is rarely
  wrong: in a stored 5% crowd run (scripts/bench_loop.py) 56 blind-checked held-out items
  gave 1 trial, 71 training picks 32; the checks the held-out items took were answers spent
  for almost nothing.
- ``double_check``: another random share, disjoint, answered by two people but shown the
  pre-annotation as usual: where the error of the delivered (mostly pre-annotated) human
  labels is measured.
Both shares are fixed by each item's content hash, before anyone answers.
"""

from __future__ import annotations

from labeling.selections import picks
from labeling.studio.opinions import blind_checked, double_checked
from pipeline.project.project import Project


def checked(project: Project, keys) -> tuple[set[str], set[str]]:
    """(double-checked keys, blind-checked keys) among ``keys``: the double checks a random
    share of them all (a random share of the delivered human labels), the blind checks of
    those not held out (the module docstring). Both fixed when the item is picked."""
    loop = project.config.loop
    keys = list(keys)
    blind = []
    if loop.blind_check:
        held = picks(project.store, holdout=True)
        blind = [k for k in keys if k not in held]
    return (double_checked(keys, loop.double_check),
            blind_checked(blind, loop.blind_check, after=loop.double_check))


def blind_keys(project: Project, keys) -> set[str]:
    """The keys among ``keys`` whose tasks carry no pre-annotation."""
    keys = list(keys)
    out = checked(project, keys)[1]
    if project.config.loop.blind_references:
        held = picks(project.store, holdout=True)
        out |= {k for k in keys if k in held}
    return out
