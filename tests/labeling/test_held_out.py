"""The held-out items' split into a choosing and a certifying part."""

import hashlib

from labeling.held_out import certifying, chooses, split_held_out


def _keys(n: int) -> list[str]:
    return ["sha256:" + hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]


def test_parts_are_disjoint_cover_everything_and_have_about_the_share():
    held = {k: ("cat" if i % 3 else "dog") for i, k in enumerate(_keys(4000))}
    choosing, certifying = split_held_out(held, 0.25)
    assert not set(choosing) & set(certifying)
    assert {**choosing, **certifying} == held
    # Binomial(4000, 0.25): sd 27; 4 sd either way.
    assert 890 <= len(choosing) <= 1110


def test_an_item_stays_in_its_part_as_the_set_grows_and_whatever_its_label():
    keys = _keys(500)
    first, _ = split_held_out(dict.fromkeys(keys[:100], "a"), 0.25)
    later, _ = split_held_out(dict.fromkeys(keys, "b"), 0.25)
    assert set(first) == {k for k in later if k in set(keys[:100])}


def test_share_zero_means_every_item_does_both():
    held = dict.fromkeys(_keys(50), "a")
    assert split_held_out(held, 0.0) == (held, held)


def test_a_larger_share_only_adds_items_to_the_choosing_part():
    # Raising [loop] selection_share never moves an item that chose into the part that
    # certifies (lowering it does: the README says so).
    keys = _keys(2000)
    small = {k for k in keys if chooses(k, 0.2)}
    large = {k for k in keys if chooses(k, 0.3)}
    assert small < large


def test_a_copy_of_an_item_that_chooses_never_certifies():
    keys = _keys(200)
    chooser = next(k for k in keys if chooses(k, 0.25))
    twin, other = [k for k in keys if not chooses(k, 0.25)][:2]
    groups = {chooser: "g", twin: "g", other: "h", "sha256:other-copy": "h"}
    held = dict.fromkeys(keys, "cat")
    part = certifying(held, 0.25, groups=groups, every_held_out=keys)
    assert twin not in part and other in part
    assert set(part) == set(split_held_out(held, 0.25)[1]) - {twin}
    # The copy that chooses need not be answered yet: a pick is enough.
    del held[chooser]
    assert twin not in certifying(held, 0.25, groups=groups, every_held_out=keys)
