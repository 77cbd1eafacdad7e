"""The planted pairs' test statistics on the dense-tail game under several models of the mains
around each pair's test (:func:`statistics_under`), with the scale of null pairs under each: why
ProxySPEX finds some planted pairs and not others at a given number of models (issues 22 and 31).

    .venv/bin/python -m benchmarks.bench_scale --parts tail --ms 20000 --out runs/bench-tail   # writes the sweep
    .venv/bin/python -m benchmarks.tail_pair_statistics runs/bench-tail/tail-n50000-m20000 --targets 0,1,2,3

Fits ProxySPEX on each target's fitting models (the fit stage's 80% split) and reads the
selection's state at the end (its model with the accepted pairs taken out again). A pair whose
statistic is below its critical value under the tests' model is out of reach of any test at
that level; null pairs (random pairs of the working set, none planted) should be at unit scale.
Beside them, an oracle (:func:`oracle_cleared` counts its pairs for ``bench_scale.py --parts
tail``): least squares on what the game planted (its ``n_mains`` largest mains and its pairs). It
knows the truth, so a planted pair below the critical value there is below it for any test that
must find the pairs and mains from the data. A planted pair with a member the screening left out
of the working set is never tested; it is named apart.
"""

import argparse
from math import comb

import numpy as np

from benchmarks.bench_scale import TAIL_GAME
from benchmarks.harness import pin_threads, save_results

from datamodels.packed import bool_t_dot
from datamodels.store.fit_ready import open_fit_ready
from datamodels.interactions import selection
from datamodels.interactions.engine import heldout_split
from datamodels.interactions.proxyspex import ProxySPEX
from datamodels.interactions.spectra import _PAD
from datamodels.sweep.planted import read_planted_truth


def pair_keys(pairs: np.ndarray, width: int) -> np.ndarray:
    return np.column_stack([np.full((len(pairs), width - 2), _PAD), np.sort(pairs, axis=1)]).astype(np.int64)


def fitting_split(run_dir):
    """A run's fit-ready layout and the masks of the fit stage's fitting models (its default 80%),
    with those models' row numbers."""
    ready = open_fit_ready(run_dir, progress=False)
    rows = np.flatnonzero(~heldout_split(ready.mask_id, 0.2, 0))
    return ready, rows, ready.masks[rows]


def oracle_statistics(X, y: np.ndarray, groups: np.ndarray, truth: dict, n_mains: int) -> dict:
    """Each planted pair's statistic under least squares on the planted game's ``n_mains`` largest
    mains and all its pairs, scaled as the tests scale theirs (residual sigma and the design
    effect of models that share a mask, ``selection.design_effect``)."""
    mains = sorted((k for k in truth if len(k) == 1), key=lambda k: -abs(truth[k]))[:n_mains]
    pairs = [k for k in truth if len(k) == 2]
    F = np.column_stack([np.ones(len(y)), X.columns([k[0] for k in mains])]
                        + [X.columns(list(k)).all(axis=1) for k in pairs]).astype(float)
    coef, *_ = np.linalg.lstsq(F, y, rcond=None)
    resid = y - F @ coef
    rss = float(resid @ resid)
    sigma = np.sqrt(rss / (len(y) - F.shape[1]) * selection.design_effect(resid, groups, rss))
    se = sigma * np.sqrt(np.diag(np.linalg.inv(F.T @ F))[-len(pairs):])
    return dict(zip(pairs, (coef[-len(pairs):] / se).round(2).tolist()))


def oracle_cleared(run_dir, targets) -> int:
    """Planted pairs, over ``targets``, whose oracle statistic (:func:`oracle_statistics`)
    clears the familywise critical value the tests give that pair (from the selection of a
    default ProxySPEX fit of the target, its members' places in the working set)."""
    (ready, rows, X), truth = fitting_split(run_dir), read_planted_truth(run_dir)
    groups = np.asarray(ready.mask_id)[rows]
    cleared = 0
    for target in targets:
        y = np.asarray(ready.target_margins[target])[rows].astype(float)
        fit, sel = fit_with_selection(X, y)
        where = {int(p): i for i, p in enumerate(fit.players_[:sel.X.shape[1]])}  # the screened ones are tested
        oracle = oracle_statistics(X, y, groups, truth[target], TAIL_GAME["n_mains"])
        for pair, z in oracle.items():
            if all(p in where for p in pair):
                critical = sel.critical(pair_keys(np.array([[where[p] for p in pair]]), sel.max_order))[0]
            else:  # a member outside the screened players: the family of every pair of the n players
                critical = selection.z_bonferroni(sel.per_order / 3, comb(X.n, 2))
            cleared += abs(z) > critical
    return int(cleared)


def fit_with_selection(X, y: np.ndarray, **params) -> tuple[ProxySPEX, selection.Selection]:
    """ProxySPEX fitted to ``y``, and the selection it ran, read after the fit."""
    made, start = [], selection.Selection.__init__

    def keep(self, *a, **k):
        start(self, *a, **k)
        made.append(self)

    selection.Selection.__init__ = keep
    try:
        fit = ProxySPEX(**params).fit(X, y)
    finally:
        selection.Selection.__init__ = start
    return fit, made[0]


def statistics_under(sel: selection.Selection, y: np.ndarray, terms: np.ndarray, groups: np.ndarray) -> dict:
    """Ways to model the mains around a pair's test, each as ``keys -> |z|``: the tests' own
    (strong mains and members by least squares, the other mains at the Lasso's coordinate step),
    the other mains unshrunk (the coordinate step's debiased values) or left out, and a partial
    t-test against least squares on every main of the working set (the pair's column made
    orthogonal to them, so its estimate is unbiased given them). Each with its noise scale."""
    resid, mains, count = sel.model(terms)
    m, n = sel.X.shape
    mean = sel.centred.mean
    scale = np.where(mean * (1 - mean) > 0, m * mean * (1 - mean), 1.0)
    debiased = mains[:n] + (bool_t_dot(sel.X, resid[:, None])[:, 0] - mean * resid.sum()) / scale
    weak = ~np.isin(np.arange(n), sel.free)
    out, tests = {}, sel.held.copy()

    def scored(held):
        sel.held = held
        r, sigma = sel.fit(terms)
        sel.held = tests
        return sigma, lambda keys: sel.centred.scores(keys, r) / sigma

    out["tests' model"] = scored(tests)
    unshrunk, left_out = tests.copy(), tests.copy()
    unshrunk[:n], left_out[:n] = np.where(weak, debiased, 0.0), 0.0
    out["other mains unshrunk"], out["other mains left out"] = scored(unshrunk), scored(left_out)
    base = np.column_stack([np.ones(m), sel.gram.columns(np.concatenate([sel.mains, terms]))]).astype(float)
    Q = np.linalg.qr(base)[0]
    r = y - Q @ (Q.T @ y)
    rss = float(r @ r)
    sigma = np.sqrt(rss / (m - base.shape[1] - 1) * selection.design_effect(r, groups, rss))

    def partial(keys):
        c = sel.centred.features(keys)[0].astype(float)
        c -= (c @ Q) @ Q.T
        return np.abs(c @ r) / (sigma * np.sqrt(np.einsum("ij,ij->i", c, c)))

    out["partial t, least squares on every main"] = sigma, partial
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--targets", default="0,1,2,3")
    args = parser.parse_args()
    pin_threads()
    (ready, rows, X), truth = fitting_split(args.run_dir), read_planted_truth(args.run_dir)
    groups = np.asarray(ready.mask_id)[rows]
    rng = np.random.default_rng(0)
    results = []
    for target in map(int, args.targets.split(",")):
        y = np.asarray(ready.target_margins[target])[rows].astype(float)
        fit, sel = fit_with_selection(X, y)
        where = {int(p): i for i, p in enumerate(fit.players_[:sel.X.shape[1]])}  # the screened ones are tested
        planted = [k for k in truth[target] if len(k) == 2]
        outside = [k for k in planted if not all(p in where for p in k)]
        planted = [k for k in planted if k not in outside]
        keys = pair_keys(np.array([[where[a], where[b]] for a, b in planted]), sel.max_order)
        pairs = np.array([[i, j] for i, j in rng.integers(0, sel.X.shape[1], (1000, 2)) if i != j
                          and not {i, j} & {where[p] for k in planted for p in k}])
        terms = sel.columns[[i for i, row in enumerate(sel.accepted) if not (keys == row).all(axis=1).any()]]
        result = {"target": target, "working_set": sel.X.shape[1], "strong_mains": int(sel.strong.sum()),
                  "planted": planted, "outside": outside, "critical": sel.critical(keys).round(2).tolist(),
                  "accepted": sorted(set(planted) & set(fit.interaction_z_)),
                  "reported": sorted(k for k in planted if fit.mobius_.get(k, 0.0) != 0.0)}
        print(f"target {target}: working set {result['working_set']:,}, {result['strong_mains']} strong mains, "
              f"critical value of the planted pairs {result['critical']}"
              + (f"; not screened, so never tested: {outside}" if outside else ""))
        print(f"  planted pairs accepted by the tests {result['accepted']}, "
              f"reported after the refit {result['reported']}")
        for name, (sigma, z_of) in statistics_under(sel, y, terms, groups).items():
            null, z = z_of(pair_keys(pairs, sel.max_order)), z_of(keys)
            result[name] = {"noise": sigma, "null_rms": np.sqrt(np.mean(null ** 2)), "planted_z": z.round(2).tolist(),
                            "cleared": int((z > np.array(result["critical"])).sum())}
            print(f"  {name:40s} noise {sigma:.3f}  null pairs rms {result[name]['null_rms']:.2f}  "
                  f"cleared {result[name]['cleared']}  "
                  f"planted {result[name]['planted_z']}")
        oracle = oracle_statistics(X, y, groups, truth[target], TAIL_GAME["n_mains"])
        z = np.abs([oracle[k] for k in planted])
        print(f"  {'oracle: least squares on the truth':40s} {'':32s}  cleared {int((z > np.array(result['critical'])).sum())}  "
              f"planted {z.tolist()}")
        results.append(result | {"oracle_z": [oracle[k] for k in planted]})
    save_results("tail_pair_statistics", results)


if __name__ == "__main__":
    main()
