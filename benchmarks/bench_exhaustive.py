"""Recovery of real retraining games against exact ground truth (exhaustive sweeps).

    make bench-exhaustive     # trains the exhaustive sweeps if needed, then this
    .venv/bin/python -m benchmarks.bench_exhaustive --run runs/classes-exhaustive [--budgets 32,64,...]

An exhaustive sweep trains every subset of ``n`` players (here the 10 digit classes, or 12
k-means clusters of digits) with 2 seeds. ``datamodels.fit.exhaustive`` turns it into the exact
references of every target: the seed-averaged margins of all ``2^n`` subsets, their exact Möbius
spectrum, and their least-squares projection on terms of order <= 3 with a standard error per
term from the spread between seeds. ProxySPEX and the linear datamodel are fitted on random
subsets (one seed each) at each budget and judged on the subsets they did not see: R^2 against
the seed-averaged margins (next to the projection's own R^2 there), and recall, precision, size
error and synergy/redundancy labels of the projection's pairs above 3 standard errors.
"""

import argparse
import time
from itertools import combinations

import numpy as np
from scipy.stats import norm

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.fit.exhaustive import recovery
from datamodels.interactions import LinearDatamodel, ProxySPEX
from datamodels.interactions.term_tests import step_up, z_bonferroni
from datamodels.store.shards import load_sweep


class TestedPairs:
    """Least squares of the margin on every main and every pair (centred features), each pair
    kept when its coefficient passes a test over the family of all pairs at ``level``: Bonferroni
    (``rate="fwer"``) or Benjamini-Hochberg (``"fdr"``). The reference a test on the pairs alone
    can reach where all of them fit in one regression; ``mobius_`` holds the mains and the pairs
    that passed, in the Möbius basis."""

    def __init__(self, rate: str, level: float = 0.05):
        self.rate, self.level = rate, level

    def at_budget(self, n: int, budget: int, sampled: np.ndarray):
        return TestedPairs(self.rate, self.level), sampled

    def _features(self, X: np.ndarray) -> np.ndarray:
        centred = X - self.mean_
        return np.column_stack([np.ones(len(X)), centred] + [centred[:, i] * centred[:, j] for i, j in self.pairs_])

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self.mean_, n = X.mean(axis=0), X.shape[1]
        self.pairs_ = list(combinations(range(n), 2))
        F = self._features(X)
        inverse = np.linalg.pinv(F.T @ F)
        self.coef_ = inverse @ F.T @ y
        resid = y - F @ self.coef_
        sigma = np.sqrt(resid @ resid / (len(y) - np.linalg.matrix_rank(F)))
        z = np.abs(self.coef_) / (sigma * np.sqrt(np.maximum(np.diag(inverse), 1e-300)))
        z = z[1 + n:]
        family = len(self.pairs_)
        passed = (z > z_bonferroni(self.level, family) if self.rate == "fwer"
                  else step_up(2 * norm.sf(z), self.level, family))
        pair_coef = self.coef_[1 + n:]
        # Möbius mains of a model complete to order 2: each main less its pairs' share at the means
        mains = self.coef_[1:1 + n].copy()
        for (i, j), b in zip(self.pairs_, pair_coef):
            mains[i] -= b * self.mean_[j]
            mains[j] -= b * self.mean_[i]
        self.mobius_ = {(i,): float(v) for i, v in enumerate(mains)} | {
            S: float(b) for S, b, ok in zip(self.pairs_, pair_coef, passed) if ok}
        return self

    def predict(self, X):
        return self._features(np.asarray(X, dtype=float)) @ self.coef_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="+", default=["runs/classes-exhaustive"], help="exhaustive sweeps' run folders")
    parser.add_argument("--budgets", default="32,64,128,256,512,1000", help="subsets fitted on, comma-separated")
    parser.add_argument("--targets", type=int, default=40, help="the first this many targets")
    parser.add_argument("--levels", default="0.05", help="ProxySPEX familywise levels, comma-separated")
    parser.add_argument("--l1-refit", action="store_true",
                        help="ProxySPEX without the relaxed refit of the tested terms (relax=False) beside")
    parser.add_argument("--fdr", action="store_true", help="ProxySPEX with false-discovery control beside")
    parser.add_argument("--least-squares", action="store_true",
                        help="least squares on every pair, tested (Bonferroni and BH at 0.05), beside")
    args = parser.parse_args()
    pin_threads()
    budgets = [int(b) for b in args.budgets.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_name()}, one thread")
    rows = []
    for run in args.run:
        sweep = load_sweep(run, require_complete=True)
        n = sweep.meta["n"]
        start = time.perf_counter()
        table = recovery(sweep.masks, sweep.margins, sweep.mask_id, sweep.repeat,
                         {"linear": LinearDatamodel()} | {f"proxyspex level={level}": ProxySPEX(level=float(level))
                                                          for level in args.levels.split(",")}
                         | ({"proxyspex L1 refit": ProxySPEX(relax=False)} if args.l1_refit else {})
                         | ({"proxyspex fdr": ProxySPEX(error_rate="fdr")} if args.fdr else {})
                         | ({"pairs LS, Bonferroni": TestedPairs("fwer"), "pairs LS, BH": TestedPairs("fdr")}
                            if args.least_squares else {}),
                         [b for b in budgets if b < 2**n], targets=range(min(args.targets, sweep.meta["T"])))
        print(f"\n{run}: n = {n} players, {len(sweep.model_index)} models, targets {table['target'].nunique()}, "
              f"{time.perf_counter() - start:.0f} s; order <= 3 explains {table['share'].median():.3f} of the "
              f"seed-averaged variance (median over targets); real pairs per target (median) "
              f"{table['pairs_real'].median():.0f} in the order-3 projection, "
              f"{table['pairs_real_order2'].median():.0f} in the order-2 one")
        summary = table.groupby(["budget", "engine"])[
            ["r2", "r2_projection", "recall", "precision", "pair_error", "kinds_agree", "recall_order2"]].median()
        print("medians over targets:")
        print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
        rows += summary.reset_index().assign(run=str(run), n=n).to_dict("records")
    save_results("bench_exhaustive", rows)


if __name__ == "__main__":
    main()
