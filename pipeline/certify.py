"""The certificate for what is delivered: how many items people, the machine or nobody
labeled, and an upper bound, with its confidence, on the share of wrong labels among the
delivered ones (human labels' residual error included).

Machine part: the accept step's bound for the accepted labels (``labeling.autoaccept``:
fixed-sequence scan on the random held-out human labels, Clopper-Pearson divided by 1 - rho);
it holds for the threshold the champion was accepted at, at the loop's confidence level.
Human part: ``[loop] reference_error``, the bound on the people's error the loop assumes (0
assumes they are right; the certificate says so), or when it is "measured" the bound the accept
step measured on the double-checked items (``pipeline.round.reference``), within the loop's
alpha. The audited precision (random audit picks of auto-accepted labels that people answered)
is reported beside it as a direct check.

With ``reference_error`` 0, an item that people answered differently refutes the assumption:
the certificate then gives no bound and says why.

New images that the monitor's drift test found unlike the held-out ones (``drifts_flagged``,
every drift found, each with the images it tested) refute the other assumption for them:
their machine labels are counted as wrong, at worst, until the held-out answers an accept step
tested the thresholds on hold them at their share of the pool, less a sampling allowance
(``cohort_checks``, recorded by the accept step; ``_covered``). Held-out picks are drawn at
random from what people may be asked, so new images reach their share as rounds pass (at once
where the audits shrank: ``pipeline.round.select.audit_draw``).

From rates to the share: the two bounds above are on rates (what a label of each kind is
wrong with); the labels delivered are one draw, and the share wrong among them varies around
those rates. The certificate's figure is a quantile of that share at the bounds
(``labeling.bounds.wrong_count_upper_bound``; each label wrong independently, as items drawn
from the same images are), at a further alpha of ``labeling.bounds.SHARE_ALPHA`` x
(1 - confidence): its ``confidence`` is the loop's less that, ``rates_confidence`` the
loop's, ``wrong_at_rates`` the expected share at the bounds (the figure before 2026-12-07,
which a pool whose rate sat just under the target exceeded in about a third of draws).

Per-class thresholds tested without the Bonferroni split (``[loop] split_error_budget =
false``) hold each at the loop's confidence alone; the certificate spends K - 1 more alphas for
the K classes tested (``_alone_alpha``), and gives no bound where that leaves under 50%.

Assumes: the held-out items are a random sample of the pool (random and audit picks only);
people's labels are wrong at most at the human bound; the items people were sent by the query
strategies (taken out of what the machine labels) leave the rest no harder than the held-out
sample says: they are the uncertain ones, which only lowers the error of what is left, but a
strategy that took out easy items would raise it (a review's point; not measured).
"""

from __future__ import annotations

import math
from datetime import datetime

from labeling.bounds import SHARE_ALPHA, wrong_count_upper_bound
from labeling.monitoring import as_utc
from labeling.schema import PEOPLE_SOURCES
from labeling.store import LabelStore
from labeling.studio.opinions import disagreed


def certificate(store: LabelStore, accept: dict | None, *, reference_error: float | str,
                confidence: float, human_only: bool = False, boxes: bool = False,
                drifts: list[dict] | None = None, counts: dict | None = None) -> dict:
    """The delivered set's counts and error bound as they stand, from the latest accept
    record (``accept``; None before any). ``human_only``: the set delivers people's labels
    only (an ``export --human-only``); ``boxes``: a detection project's; ``drifts``: the
    drifts found (``drifts_flagged``); ``counts``: the labels counted as an export read them
    (``pipeline.export.labeled_rows``), else read now. JSON-ready."""
    # The double-checked items the people's error was measured on (None: assumed, or a record
    # from before 2026-12-02, whose "reference" was measured on other items).
    checks = None
    if reference_error == "measured":  # as the accept step measured it (None: not yet)
        # Records before 2026-12-02 bounded the human labels by rho ("reference").
        measured = (accept or {}).get("human_error") or (accept or {}).get("reference") or {}
        reference_error = measured.get("rate_ub")
        checks = ((accept or {}).get("human_error") or {}).get("n_items")
    # What an export writes: a label in force on an item neither skipped, disputed nor
    # quarantined (an audited machine label whose people tied or skipped stays in force, and
    # is held back from the delivered set as the export holds it back).
    if counts is None:
        counts = {"by_source": store.delivery_counts(), "items": store.count_items()}
    n_items, counts = counts["items"], counts["by_source"]
    people = [counts.get(s, (0, 0)) for s in PEOPLE_SOURCES]
    n_human, human_held = sum(p[0] for p in people), sum(p[1] for p in people)
    machine_ok, machine_held = counts.get("machine", (0, 0))
    n_machine = 0 if human_only else machine_ok
    delivered = n_human + n_machine
    machine_ub = _machine_bound(accept) if n_machine else 0.0
    out = {
        "items": n_items, "delivered": delivered, "human": n_human, "machine": n_machine,
        "withheld": human_held + (0 if human_only else machine_held),
        # Labeled by nobody (an --human-only export's machine labels are apart: not exported).
        "unlabeled": n_items - sum(ok + held for ok, held in counts.values()),
        "confidence": confidence,
        "machine_error_ub": machine_ub, "human_error_ub": reference_error, "wrong_ub": None,
        "human_error_checks": checks,
        "assumes": "", "audit": (accept or {}).get("audit"),
    }
    if human_only and machine_ok + machine_held:
        out["machine_not_exported"] = machine_ok + machine_held
    if not delivered:  # a bound on the share of wrong labels among none says nothing
        out["reason"] = "no label is delivered"
        return out
    if reference_error is None:
        out["reason"] = "the people's error is not measured yet"
        return out
    if reference_error == 0 and (split := disagreed(store, boxes=boxes))[0]:
        # The store's own answers refute "people are right": no bound rests on it.
        out["people_disagreed"], out["answered_by_several"] = split
        out["reason"] = (f"people gave different answers on {split[0]:,} of the {split[1]:,} "
                         "item(s) several of them answered, so the assumption that their "
                         "labels are right ([loop] reference_error = 0) does not hold: set "
                         '[loop] reference_error = "measured" (or [loop] human_error to a bound on '
                         "their error)")
        return out
    out["assumes"] = ("people's labels are right (reference_error = 0)" if reference_error == 0
                      else f"people err at most {reference_error:.3f}") + \
        "; held-out human labels are a random sample of the pool"
    alone = _alone_alpha(accept) if n_machine else 0.0
    share_alpha = SHARE_ALPHA * (1 - confidence)
    stated = round(confidence - alone - share_alpha, 12)
    if machine_ub is None:
        out["reason"] = "no bound for the machine labels in the last accept step"
    elif stated <= 0.5:
        out["reason"] = ("the classes' thresholds were each tested alone ([loop] "
                         "split_error_budget = false), and together they hold at under 50% "
                         "confidence: set split_error_budget = true")
    else:
        # The bounds cap the count of wrong labels among all the labels in force of each
        # kind; those held back are not a random draw (hard items get skipped and disputed),
        # so all of the wrong ones may be among the delivered: count over all, divide by these.
        machine_all = n_machine + (0 if human_only else machine_held)
        uncovered, rounds = _uncovered(store, accept, drifts) if machine_all else (0, [])
        uncovered = min(uncovered, machine_all)  # labels in force on those images: all are
        if uncovered:
            out["uncovered_machine"], out["drift_rounds"] = uncovered, rounds
        # The rates bound what to expect of a label; the share wrong among these very labels
        # varies around that (labeling.bounds.wrong_count_upper_bound), at its own alpha.
        groups = [(machine_all - uncovered, machine_ub), (n_human + human_held, reference_error)]
        wrong = uncovered + wrong_count_upper_bound(groups, confidence=1 - share_alpha)
        out["wrong_ub"] = min(1.0, wrong / max(1, delivered))
        out["wrong_at_rates"] = min(1.0, (uncovered + sum(n * rate for n, rate in groups))
                                    / max(1, delivered))
        out["rates_confidence"] = round(confidence - alone, 12)
        out["confidence"] = stated
    return out


def drifts_flagged(rounds: list[dict]) -> list[dict]:
    """Every drift the monitor found (new images unlike the held-out ones), oldest first: the
    round, and the images it tested as those added after ``after`` (the previous round's
    start) and up to ``until`` (its own round's start, before which its ingest ran)."""
    found = []
    for r in rounds:
        drift = (((r.get("stats") or {}).get("monitor") or {}).get("drift") or {})
        if drift.get("computed") and drift.get("drift") and drift.get("cutoff"):
            started = r.get("started_at")
            found.append({"round": r["id"], "after": drift["cutoff"],
                          "until": as_utc(started).isoformat() if started else None})
    return found


def cohort_checks(store: LabelStore, drifts: list[dict], validation: list[str]) -> dict:
    """For the accept record: per drift found (by round), how many of the items the thresholds
    were tested on (``validation``) came with it, against its share of the pool."""
    if not drifts:
        return {}
    added = {k: as_utc(i.added_at) for k, i in store.items_by_key(validation).items()}
    pool = store.count_items()
    out = {}
    for drift in drifts:
        after, until = _window(drift)
        out[str(drift["round"])] = {
            "items": len(store.item_keys(added=(after, until))), "pool": pool,
            "validation": sum(after < t and (until is None or t <= until)
                              for t in added.values()),
            "validation_total": len(validation)}
    return out


def _window(drift: dict) -> tuple[datetime, datetime | None]:
    until = drift.get("until")
    return (as_utc(datetime.fromisoformat(drift["after"])),
            None if until is None else as_utc(datetime.fromisoformat(until)))


def _covered(check: dict | None) -> bool:
    """Whether the held-out answers an accept step tested on hold a drift's images at their
    share of the pool, less what random sampling at that share falls short by (2 standard
    deviations): at half the share (the rule before), their errors weighed half."""
    if not check or not check.get("validation"):
        return False
    n, share = check["validation_total"], check["items"] / max(1, check["pool"])
    return check["validation"] >= n * share - 2 * math.sqrt(n * share * (1 - share))


def _uncovered(store: LabelStore, accept: dict | None, drifts: list[dict] | None
               ) -> tuple[int, list[int]]:
    """Machine labels in force on the images of each drift found whose images the
    thresholds were not tested on enough of (module docstring), and those drifts' rounds."""
    checks = (accept or {}).get("drift_cohorts") or {}
    count, rounds = 0, []
    for drift in drifts or []:
        if _covered(checks.get(str(drift["round"]))):
            continue
        on_them = store.current_source_counts(added=_window(drift)).get("machine", 0)
        if on_them:
            count += on_them
            rounds.append(drift["round"])
    return count, rounds


def _machine_bound(accept: dict | None) -> float | None:
    """The bound on accepted machine labels' error from an accept step's record: the error
    the threshold scan tested the chosen cut against (the target's, or the dataset rule's
    allowance there), which is what its guarantee covers. The Clopper-Pearson bound at that
    cut, lower, is not: the cut is the last one before a failure, chosen on the same answers,
    and a review's Monte Carlo found that bound below the true error in up to 22% of the runs
    that accepted anything (it was the certificate's figure until 2026-12-07)."""
    if not accept:
        return None
    if accept.get("dataset") is not None:
        dataset = accept["dataset"]
        if dataset.get("threshold") is None:
            return None
        return dataset.get("machine_error_max", dataset.get("machine_error_ub"))
    if accept.get("image_threshold") is not None:  # detection: the share of wrong images
        cut = accept["image_threshold"]
        if cut.get("threshold") is None or cut.get("bound") is None:
            return None
        return 1.0 - cut["target_precision"]
    thresholds = accept.get("thresholds") or {}
    per_class = thresholds.get("per_class") or []
    # Pooled: one cut for all accepted labels. Per class: each class's cut holds (with the
    # Bonferroni split, all at once), so the target bounds their mixture.
    bounds = [c["error_upper_bound"] for c in per_class
              if c.get("threshold") is not None and c.get("error_upper_bound") is not None]
    if not bounds:
        return None
    target = thresholds.get("target_precision")
    # A record without its target tested nothing the certificate may count (the bound at the
    # chosen cut is not covered, above): no bound until the next accept step.
    return None if target is None else 1.0 - target


def _alone_alpha(accept: dict | None) -> float:
    """The alpha the machine labels' bound spends beyond the loop's: per-class thresholds
    tested without the Bonferroni split hold each at the loop's confidence, so the K classes
    tested hold together at 1 - K alpha (union bound), K - 1 alphas more. All K tested, not
    only those given a threshold: a class that passed wrongly is one given one (a review's
    Monte Carlo: one class of ten given in 35% of runs, all ten 2.1% wrong)."""
    thresholds = (accept or {}).get("thresholds") or {}
    if not thresholds.get("each_alone"):
        return 0.0
    tested = len(thresholds.get("per_class") or [])
    return max(0, tested - 1) * thresholds["alpha"]["thresholds"]


def latest_accept(rounds: list[dict]) -> dict | None:
    """The accept step's record of the newest round that ran it."""
    for r in reversed(rounds):
        accept = (r.get("stats") or {}).get("accept")
        if accept is not None:
            return accept
    return None


def latest_annotator_quality(rounds: list[dict]) -> list[dict]:
    """Each person's error rate as the newest round's monitor step measured it (a Dawid-Skene
    fit with resamples takes seconds: status and the report read it, they do not refit)."""
    for r in reversed(rounds):
        monitor = (r.get("stats") or {}).get("monitor")
        if monitor is not None and "annotator_quality" in monitor:
            return list(monitor["annotator_quality"])
    return []


def project_certificate(project) -> dict:
    """The certificate of ``project``'s dataset as it stands now."""
    loop = project.config.loop
    rounds = project.store.rounds()
    return certificate(project.store, latest_accept(rounds),
                       reference_error=loop.people_error, confidence=loop.confidence_level,
                       boxes=project.config.project.task == "detection",
                       drifts=drifts_flagged(rounds))


def describe(cert: dict) -> str:
    """One line for people: what is delivered and how wrong it can be."""
    head = (f"{cert['delivered']:,} labels delivered ({cert['human']:,} by people, "
            f"{cert['machine']:,} by the machine), {cert['unlabeled']:,} unlabeled")
    if cert.get("machine_not_exported"):  # an --human-only export: the rest are not unlabeled
        head += f", {cert['machine_not_exported']:,} labeled by the machine and not exported"
    if cert.get("withheld"):  # records from before 2026-12-06 have none
        head += (f", {cert['withheld']:,} labeled but held back (skipped, disputed or "
                 f"quarantined)")
    if cert.get("wrong_ub") is None:
        when = "" if cert.get("people_disagreed") else " yet"
        return f"{head}; no error bound{when} ({cert.get('reason')})"
    line = (f"{head}; wrong labels <= {100 * cert['wrong_ub']:.2f}% with "
            f"{_percent(cert['confidence'])} confidence (assumes {cert['assumes']})")
    if cert.get("uncovered_machine"):
        rounds = ", ".join(str(r) for r in cert["drift_rounds"])
        line += (f"; counted as wrong: the {cert['uncovered_machine']:,} machine label(s) on "
                 f"new images unlike the held-out ones (drift found in round {rounds}), until "
                 f"people's answers on them test the thresholds")
    return line + _people_part(cert)


def _percent(confidence: float) -> str:
    """A confidence as people read it, never rounded up: 0.94 is "94%", 0.988 "98.8%" (not
    "99%", which would hide the share's alpha)."""
    tenths = math.floor(1000 * confidence + 1e-6)
    return f"{tenths // 10}%" if tenths % 10 == 0 else f"{tenths / 10:.1f}%"


def _people_part(cert: dict) -> str:
    """Where the people's part is most of the bound, what it rests on and what narrows it: a
    bound of several percent on labels that are nearly all right reads as broken otherwise."""
    # Wrong labels at the rates' bounds (certificates before 2026-12-07 had only those).
    total = cert.get("wrong_at_rates", cert["wrong_ub"]) * cert["delivered"]
    people = cert["human"] * (cert.get("human_error_ub") or 0.0)
    if people <= 0.5 * total:  # also nothing delivered: both 0
        return ""
    share = people / total
    checks = cert.get("human_error_checks")
    if checks is None:
        return f"; {100 * share:.0f}% of it is the people's part, at the error it assumes"
    return (f"; {100 * share:.0f}% of it is the people's part: their error is bounded from "
            f"{checks:,} double-checked item(s), and more of them ([loop] double_check) "
            f"narrow it")
