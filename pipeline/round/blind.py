"""Which items people see without the model's pre-annotation, and which get two people.

- Held-out items (random and audit picks), when ``[loop] blind_references``: they are the
  reference every threshold is tested against, and a person shown the model's answer repeats
  it far more often than one who is not (anchoring). Blind, a reference repeats a wrong model
  label only when the person confuses the same two classes unprompted.
- ``blind_check``: a random share of all items, pushed blind and answered by two people. On them
  rho of blind answers is measured (pipeline/round/reference.py); most of them are the
  uncertain items people are sent, where the model errs often enough to count.
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
    """(double-checked keys, blind-checked keys) among ``keys``."""
    loop = project.config.loop
    keys = list(keys)
    return (double_checked(keys, loop.double_check),
            blind_checked(keys, loop.blind_check, after=loop.double_check))


def blind_keys(project: Project, keys) -> set[str]:
    """The keys among ``keys`` whose tasks carry no pre-annotation."""
    keys = list(keys)
    out = checked(project, keys)[1]
    if project.config.loop.blind_references:
        held = picks(project.store, holdout=True)
        out |= {k for k in keys if k in held}
    return out
