"""How much choosing the champion on the held-out items raises the chance that its bound fails.

The promote step judges champion and challenger on the held-out human labels (the paired rule,
``pipeline.round.promote.paired_rule``), and the accept step then tests the winner's thresholds
on those same items. Clopper-Pearson (``labeling.bounds``) holds at its confidence for a model
chosen without them; picking the better of two on them favours the one that was lucky there.

Simulated, so that the truth is known: the first model errs at ``e_in`` on the share
``in_region`` of items the threshold accepts and ``e_out`` elsewhere, a share ``shared`` of each
item's error chance common to all models. Each round a new challenger is judged against the
champion on all held-out items so far (``n`` new ones a round), and the champion's bound on
the accepted region is computed on the same items. Prints, per error rate, how often the
bound is below the true error: for the first model, fixed in advance, and for the champion
after one decision on all the items and after ``rounds`` decisions, one a round.
By default every model is as good as every other; ``--worse`` makes every challenger err that
many times as often as the first model, where the promote step's rule keeps a lucky champion
more often. ``--selection-share`` splits the held-out items as ``[loop] selection_share`` does
(``labeling.held_out``): the rule judges on that share, every bound is computed on the rest.

    .venv/bin/python scripts/bench_selection.py                         # one set for both
    .venv/bin/python scripts/bench_selection.py --selection-share 0.25  # the loop's default
    .venv/bin/python scripts/bench_selection.py --rule better-of-two     # the rule before
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import binomtest

from labeling.bounds import error_upper_bound
from pipeline.round.promote import SIGN_TEST_ALPHA, paired_rule, wins_and_losses


def beyond_chance(new: dict, old: dict) -> tuple[bool, str]:
    """For comparison: promote only a challenger right on significantly more of the items
    where the two differ (one-sided sign test below SIGN_TEST_ALPHA)."""
    won, lost = wins_and_losses(new, old)
    p = binomtest(won, won + lost, 0.5, alternative="greater").pvalue if won > lost else 1.0
    return p < SIGN_TEST_ALPHA, ""


def better_of_two(new: dict, old: dict) -> tuple[bool, str]:
    """For comparison: the promote step's rule until 2026-12-06. The challenger right on more
    of the items where the two differ wins; on a tie, or while the champion's lead is within
    chance, the lower log-loss decides."""
    won, lost = wins_and_losses(new, old)
    if won != lost:
        lead_is_chance = binomtest(lost, won + lost, 0.5, alternative="greater").pvalue > \
            SIGN_TEST_ALPHA
        if won > lost or not lead_is_chance:
            return won > lost, ""
    return new["log_loss"] < old["log_loss"], ""


RULES = {"promote": paired_rule, "better-of-two": better_of_two, "beyond-chance": beyond_chance}


def model_outcome(rng, p_wrong, shared_wrong, shared, scale) -> tuple[np.ndarray, np.ndarray]:
    """One model's (wrong items, per-item log-loss): each item wrong at ``scale * p_wrong``,
    ``shared * p_wrong`` of that through errors every model makes on the item (``shared_wrong``).
    The log-loss follows the errors closely, so the old rule's log-loss step acts as "fewer
    errors" here, a tie as a coin flip."""
    own = (scale - shared) * p_wrong / (1 - shared * p_wrong)
    wrong = shared_wrong | (rng.random(len(p_wrong)) < own)
    return wrong, np.where(wrong, 2.3, rng.uniform(0, 0.1, len(p_wrong)))


def one_run(rng, args, e_in) -> tuple[bool, list[bool]]:
    """(fixed model's bound failed at the end, champion's bound failed after each round)."""
    total = args.n * args.rounds
    region = rng.random(total) < args.in_region
    # Items that choose the champion; with a share of 0, every item chooses and certifies.
    chooses = rng.random(total) < args.selection_share
    certifies = ~chooses if args.selection_share else np.ones(total, bool)
    p_wrong = np.where(region, e_in, args.e_out)
    shared_wrong = rng.random(total) < p_wrong * args.shared
    # The first model errs at e_in where accepted, every challenger at worse * e_in.
    scales = [1.0] + [args.worse] * args.rounds
    models = [model_outcome(rng, p_wrong, shared_wrong, args.shared, s) for s in scales]

    def fails(m: int, upto: int) -> bool:
        inside = (region & certifies)[:upto]
        k = int(models[m][0][:upto][inside].sum())
        bound = error_upper_bound(k, int(inside.sum()), confidence=args.confidence)
        return bound < e_in * scales[m]

    def score(m: int, upto: int) -> dict:
        judged = chooses[:upto] if args.selection_share else slice(None, upto)
        loss = models[m][1][:upto][judged]
        return {"_right": ~models[m][0][:upto][judged],
                "log_loss": float(loss.mean()) if len(loss) else 0.0}

    champion, champion_fails = 0, []
    for r in range(1, args.rounds + 1):
        upto = args.n * r
        better, _ = RULES[args.rule](score(r, upto), score(champion, upto))
        champion = r if better else champion
        champion_fails.append(fails(champion, upto))
    return fails(0, total), champion_fails


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--n", type=int, default=60, help="held-out items added a round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--in-region", type=float, default=0.9)
    parser.add_argument("--e-out", type=float, default=0.2)
    parser.add_argument("--shared", type=float, default=0.5)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--e-in", type=float, nargs="+", default=[0.02, 0.025, 0.03, 0.04])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", choices=sorted(RULES), default="promote",
                        help="promote: the promote step's rule; the others for comparison")
    parser.add_argument("--worse", type=float, default=1.0,
                        help="every challenger's error as a multiple of the first model's "
                        "(1: all equal; at least --shared)")
    parser.add_argument("--selection-share", type=float, default=0.0,
                        help="share of held-out items that only choose the champion, the "
                        "rest only certify it (0: every item does both)")
    args = parser.parse_args()
    if not 0 <= args.selection_share < 1:
        parser.error("--selection-share must be in [0, 1)")
    if args.worse < args.shared:
        parser.error("--worse must be at least --shared (the errors every model shares)")
    rng = np.random.default_rng(args.seed)
    print(f"{args.trials} runs each; rule {args.rule}; {args.n} held-out items a round, "
          f"{args.rounds} rounds, {args.in_region:.0%} of them in the accepted region; "
          f"challengers' error x{args.worse}, shared {args.shared}; "
          f"{args.selection_share:.0%} of them only choose; bound at "
          f"{args.confidence}; seed {args.seed}")
    print("error in region | fixed model's bound fails | champion's, after 1 decision | "
          f"after {args.rounds}")
    for e_in in args.e_in:
        fixed, chain = 0, np.zeros(args.rounds)
        for _ in range(args.trials):
            f, c = one_run(rng, args, e_in)
            fixed += f
            chain += np.array(c)
        # One decision on all n * rounds items at once, the fixed model's figure's items.
        first = one_decision(rng, args, e_in)
        print(f"{e_in:15.3f} | {fixed / args.trials:25.4f} | {first:28.4f} | "
              f"{chain[-1] / args.trials:.4f}", flush=True)


def one_decision(rng, args, e_in) -> float:
    """Failure rate of the champion after one decision (``args.rule``) on all ``n * rounds``
    items at once."""
    one = argparse.Namespace(**{**vars(args), "n": args.n * args.rounds, "rounds": 1})
    return float(np.mean([one_run(rng, one, e_in)[1][0] for _ in range(args.trials)]))


if __name__ == "__main__":
    main()
