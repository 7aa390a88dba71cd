"""Held-out references that go against the model by one vote get more people.

A held-out item's reference is what the thresholds are tested against: where it goes against
the model's label, it counts as a model error. People err alike on hard images (look-alike
classes), so two of three can outvote the right answer. In ``scripts/bench_loop.py`` at 5%
noise (seeds 0 and 1, round 7), among the 350 validation items the model was surest of, it
was never wrong, yet one and three references were 2-1 majorities for a wrong class and one
more a tie whose third person had skipped (against the truth file); each counted as an error,
and together they kept the bound above 2%.

The rule: a held-out item that three or more people answered, whose answers go against the
model's label by a margin of at most one vote (2-1, 2-1-1, a tie), goes to one more person,
until the margin is two or ``max_people`` people answered. A reference that is a label (2-1)
gets a fourth person only if a fifth could follow: a fourth alone may turn it into a 2-2 tie
that nobody is left to break. Only against the model: there a wrong reference costs a false
error; a majority for the model's label by one vote is not asked about again (the bound's
assumptions cover it: rho, ``pipeline/round/reference.py``).

What this adds to the bound's assumptions (``pipeline/round/reference.py``): asking more where
people go against the model can also end at the model's wrong label, when later people err
toward it; that takes more people erring the same way as the model than the 2-1 route rho
already leaves uncounted. ``max_people`` is the number of accounts where labelloop made them
(``[studio] annotators`` or ``labelloop studio add-annotator``), at most ``MAX_PEOPLE``; with
three, nothing is asked.

Not asked again: two people who agree against the model, however sure it is. Tried on
2026-12-04 (five accounts; three more people at once where the model was at least 0.9 sure; the
``--review-share 0`` runs of ``scripts/bench_loop.py`` at 5% noise, seeds 0-2): of the 7 items
it asked about, the two people were right 5 times (the others confirmed them, 4-0 or 5-0), and
where they were wrong the others sided with them, 3-2. It rescued no reference and cost 21
answers, so it was taken out: on this crowd, people who err alike on an image do so because the
image is hard for everyone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from labeling.studio.opinions import OpinionRequest

MAX_PEOPLE = 5


def settle(votes: Mapping[str, Mapping[str, str]], model_labels: Mapping[str, str],
           held_out: set[str], tasks: Mapping[str, int], asked: Mapping[str, int],
           *, max_people: int = MAX_PEOPLE) -> list[OpinionRequest]:
    """The overlap raises the rule (module docstring) asks for now; ``asked``: the overlap
    already requested per item key (1 if never)."""
    out = []
    for key in sorted(held_out):
        answers = list((votes.get(key) or {}).values())
        if len(answers) < 3 or key not in tasks or key not in model_labels:
            continue
        ranked = Counter(answers).most_common()
        top, count = ranked[0]
        margin = count - (ranked[1][1] if len(ranked) > 1 else 0)
        if margin >= 2 or (margin == 1 and top == model_labels[key]):
            continue
        want = len(answers) + 1
        room = max_people - len(answers) >= (1 if margin == 0 else 2)
        if room and asked.get(key, 1) < want:
            shown = ", ".join(f"{label} x{n}" for label, n in ranked)
            out.append(OpinionRequest(key, tasks[key], want,
                                      f"people ({shown}) go against the model's "
                                      f"{model_labels[key]!r} by one vote or tie"))
    return out
