"""The random held-out items split in two by a hash of their key: a part that chooses (which
model is champion, which training parameters) and a part that certifies (the accept step's
thresholds and their bound).

Why: a bound tested on the items that also chose the model is partly a record of that model's
luck there. Kept for being right on a few held-out items, a champion has, on those items, a
lower error than it will have on the pool (``scripts/bench_selection.py`` measures how often a
nominal 95% bound then fails). With the two parts disjoint, the champion is a function of the
training labels and the choosing part only, and the certifying part is still a random sample of
the pool that nothing about the model was chosen on: the Clopper-Pearson bound holds as it
does for a model fixed in advance.

The split is a hash of the item key (the content's sha256) with a salt of its own: fixed for
an item at a given share (an item never moves between parts as rounds go by, or the parts would
not stay disjoint over time; a larger share only adds items to the choosing part), independent
of its label, its picking and every model. A near-duplicate of an item that chooses never
certifies (``certifying``): a re-encoded copy is the same picture. Not covered:
acceptance decides which items people are sent, so later training sets depend on earlier
held-out answers through the accepted items (an indirect channel, for either part).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import TypeVar

V = TypeVar("V")
_SALT = b"labelloop/held-out-part:"


def chooses(key: str, share: float) -> bool:
    """Whether held-out item ``key`` is in the choosing part, which has about ``share`` of
    the items."""
    digest = hashlib.sha256(_SALT + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < share * 2 ** 64


def split_held_out(held_out: Mapping[str, V], share: float) -> tuple[dict[str, V], dict[str, V]]:
    """(choosing part, certifying part) of ``held_out`` (key -> label). ``share`` 0: both are
    all of it, as before the split (the bound is then lowered by the choice, not kept; the
    README's "The champion's selection")."""
    if share <= 0:
        return dict(held_out), dict(held_out)
    choosing = {k: v for k, v in held_out.items() if chooses(k, share)}
    return choosing, {k: v for k, v in held_out.items() if k not in choosing}


def certifying(held_out: Mapping[str, V], share: float, *, groups: Mapping[str, str],
               every_held_out: Iterable[str]) -> dict[str, V]:
    """The certifying part of ``held_out``, less the items whose near-duplicate group
    (``groups``: key -> group key) has a member among ``every_held_out`` (answered or not)
    that chooses."""
    if share <= 0:
        return dict(held_out)
    chose = {groups[k] for k in every_held_out if k in groups and chooses(k, share)}
    return {k: v for k, v in split_held_out(held_out, share)[1].items()
            if groups.get(k) not in chose}
