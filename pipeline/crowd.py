"""The simulated crowd on a project: annotator accounts on its embedded Label Studio, how hard
each item is, and a round of answers from them (``labeling.studio.crowd``).

Hardness comes from the images themselves, so that people err where images are ambiguous, as
real ones (and models) do: each image, shrunk to 16x16 grey, is compared with the mean image of
every class; an image nearly as close to another class's mean as to its own is hard, and that
class is the one it is confused with. Hardness is scaled to mean 1 over the pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from labeling.studio.accounts import add_annotator, annotator_key, list_annotators
from labeling.studio.connection import connect
from labeling.studio.crowd import CrowdMember, CrowdReport, crowd_rates, simulate_crowd
from labeling.studio.errors import StudioError
from pipeline.project.project import Project
from pipeline.round.session import session
from pipeline.round.sync import sync

SIDE = 16
# The last of three or more people accepts the shown pre-annotation this often.
ANCHOR_RATE = 0.5


def ensure_annotators(project: Project, count: int) -> list[str]:
    """At least ``count`` annotator accounts (``ann1`` ... made as needed); their names."""
    studio, _ = session(project)
    have = {a.name for a in list_annotators(project.config.studio_dir)}
    for i in range(1, count + 1):
        if len(have) >= count:
            break
        name = f"ann{i}"
        if name not in have:
            add_annotator(studio, project.config.studio_dir, name)
            have.add(name)
    return sorted(have)


def item_difficulty(paths: Mapping[str, Path], truth: Mapping[str, str], classes
                    ) -> tuple[dict[str, float], dict[str, str]]:
    """(hardness, confusable class) per item key, from the images (module docstring)."""
    keys = [k for k in paths if k in truth]
    if not keys:
        return {}, {}
    pixels = np.stack([_small(paths[k]) for k in keys])  # [N, SIDE*SIDE]
    labels = np.array([list(classes).index(truth[k]) for k in keys])
    means = np.stack([pixels[labels == c].mean(axis=0) if np.any(labels == c)
                      else np.full(pixels.shape[1], np.inf) for c in range(len(classes))])
    dist = np.linalg.norm(pixels[:, None, :] - means[None, :, :], axis=2)  # [N, K]
    own = dist[np.arange(len(keys)), labels]
    other = dist.copy()
    other[np.arange(len(keys)), labels] = np.inf
    nearest = other.argmin(axis=1)
    # > 1 when another class's mean is closer than the item's own: the ambiguous ones.
    ratio = own / np.maximum(other.min(axis=1), 1e-9)
    raw = np.exp(4.0 * (ratio - ratio.mean()))
    hardness = raw / raw.mean()
    return ({k: float(h) for k, h in zip(keys, hardness, strict=True)},
            {k: classes[int(c)] for k, c in zip(keys, nearest, strict=True)})


def simulated_accounts(project: Project, count: int) -> list[str]:
    """The accounts ``ann1`` ... ``ann<count>``, made as needed: the simulated crowd's own,
    never a real person's (whose answers would go in their name)."""
    studio, _ = session(project)
    have = {a.name for a in list_annotators(project.config.studio_dir)}
    names = [f"ann{i}" for i in range(1, count + 1)]
    for name in names:
        if name not in have:
            add_annotator(studio, project.config.studio_dir, name)
    return names


def crowd_answers(project: Project, truth_by_path: Mapping[str, str], *, mean_error: float,
                  seed: int, anchor: bool = True,
                  people: Sequence[str] | None = None) -> CrowdReport:
    """Every open task answered by the project's annotator accounts (or those named
    ``people``), as a crowd whose error rates average ``mean_error`` (module docstring of
    ``labeling.studio.crowd``)."""
    studio, sp = session(project)
    accounts = list_annotators(project.config.studio_dir)
    if people is not None:
        accounts = [a for a in accounts if a.name in set(people)]
    if not accounts:
        raise StudioError("no annotator accounts: add some with `labelloop studio "
                          "add-annotator NAME` (the quickstart makes [studio] annotators)")
    rates = crowd_rates(len(accounts), mean_error)
    members = [CrowdMember(a.name, a.user_id, rate,
                           anchor_rate=ANCHOR_RATE if anchor and len(accounts) >= 3
                           and i == len(accounts) - 1 else 0.0)
               for i, (a, rate) in enumerate(zip(accounts, rates, strict=True))]
    timeout = project.config.studio.timeout_s
    connections = {a.name: connect(studio.url, annotator_key(a), timeout=timeout)
                   for a in accounts}
    items = {i.key: Path(i.path) for i in project.store.items()}
    truth = {k: truth_by_path[str(p.resolve())] for k, p in items.items()
             if str(p.resolve()) in truth_by_path}
    hardness, confusable = item_difficulty(items, truth, project.classes)
    return simulate_crowd(connections, sp, members, truth, hardness=hardness,
                          confusable=confusable, seed=seed)


def _small(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((SIDE, SIDE)), dtype=np.float32).ravel()


def crowd_work(project: Project, truth_by_path: Mapping[str, str], *, mean_error: float,
               seed: int, passes: int = 3, anchor: bool = True,
               people: Sequence[str] | None = None) -> CrowdReport:
    """``passes`` passes of the crowd over the open tasks with a sync between two, which asks
    for the second and third opinions their answers call for: people who keep working while
    the loop syncs more often than it runs rounds. The answers of all passes are summed."""
    total = CrowdReport()
    for n in range(passes):
        if n:
            sync(project)
        report = crowd_answers(project, truth_by_path, mean_error=mean_error,
                               seed=seed * 10 + n, anchor=anchor, people=people)
        for part in ("answered", "wrong", "skipped"):
            mine = getattr(total, part)
            for name, count in getattr(report, part).items():
                mine[name] = mine.get(name, 0) + count
    return total
