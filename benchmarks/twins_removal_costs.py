"""Issue 19, item 3: why the surrogate pruners do not treat the twins specially. What removing
one player costs the pruning objective, and what the greedy does with surrogates that know the
duplicates.

    .venv/bin/python -m benchmarks.twins_removal_costs --run runs/duplicates   # after make duplicates-study

Reads a run of ``conf/experiment/duplicates.yaml`` with its ProxySPEX fit and jobs/duplicates.py's
pairs. (1) At the full set, every player's removal cost under the interactions surrogate's
objective (the expected accuracy on the targets, ``mean_t Phi(f_t / tau_t)``, docs/pruning.md),
and the twins' copies' costs among them. (2) The surrogate *completed* with the duplicate pairs:
in every target where a member has a main effect and the fit has no pair term, the pair term
``-rho G_t`` of its pooled fraction ``rho`` (capped at 1), with ``G_t = g_t / (1 - q rho)`` the
Möbius main the fit's marginal mains ``g_t`` imply and the members' mains raised by the partner's
kept frequency ``q`` times ``rho G_t``, so that one member kept is worth ``G_t``, as both are.
The greedy's twin outcomes with each surrogate, at the experiment's fractions. (An exploration
kept as the record of docs/benchmarks.md, "Duplicates: pruning the twins"; the pruner does not
use the completion.)
"""

import argparse

import numpy as np
import pandas as pd
from scipy.stats import norm

from benchmarks.harness import pin_threads, save_results
from datamodels.views.analysis import RunView
from datamodels.pruning.duplicates import read_pairs
from datamodels.pruning.greedy import greedy_keep_sets
from datamodels.pruning.surrogate import fitted_surrogate
from datamodels.sweep.twins import twin_outcomes

FRACTIONS = (0.95, 0.9, 0.8, 0.7, 0.5)


def completed_terms(view: RunView, surrogate, pairs: pd.DataFrame) -> pd.DataFrame:
    """The ProxySPEX fit's terms with the duplicate pairs' pooled terms added (module docstring)."""
    terms = view.interactions[view.interactions["engine"] == "proxyspex"].reset_index(drop=True)
    key = [tuple(sorted(int(p) for p in m)) for m in terms["members"]]
    fitted = set(zip(key, terms["target"]))
    profiles = surrogate.main_effects.toarray()
    ready = view.models
    kept = ready.masks.mean()
    added, raised = [], {}
    for a, b, rho in pairs.loc[pairs["duplicate"], ["player_a", "player_b", "fraction"]].itertuples(index=False):
        rho, q = min(float(rho), 1.0), (kept[a] + kept[b]) / 2
        for t in np.flatnonzero((profiles[a] != 0) | (profiles[b] != 0)):
            if ((a, b), t) in fitted:
                continue
            G = (profiles[a, t] + profiles[b, t]) / 2 / (1 - q * rho)
            added.append({"target": t, "members": [a, b], "mobius": -rho * G})
            for member, partner in ((a, b), (b, a)):
                raised[(member, t)] = raised.get((member, t), 0.0) + kept[partner] * rho * G
    mobius = terms["mobius"].to_numpy(copy=True)
    for row, (members, t) in enumerate(zip(key, terms["target"])):
        if len(members) == 1:
            mobius[row] += raised.pop((members[0], t), 0.0)
    added += [{"target": t, "members": [p], "mobius": v} for (p, t), v in raised.items()]
    return pd.concat([terms.assign(mobius=mobius), pd.DataFrame(added).assign(engine="proxyspex")],
                     ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/duplicates")
    args = parser.parse_args()
    pin_threads()
    view = RunView.open(args.run)
    twins = pd.read_csv(view.folder.twins)
    plain = fitted_surrogate(view.models, view.interactions, view.fit_metrics, "proxyspex")
    completed = fitted_surrogate(view.models, completed_terms(view, plain, read_pairs(args.run)), view.fit_metrics,
                                 "proxyspex")
    n, classes = view.n, np.asarray(view.player_labels)
    sizes = [round(f * n) for f in FRACTIONS]
    keep, rows = [], []
    for name, surrogate in (("interactions", plain), ("completed with the duplicates", completed)):
        everyone = np.ones((n + 1, n), dtype=bool)
        everyone[np.arange(1, n + 1), np.arange(n)] = False  # row 0: the full set; row i + 1: without i
        objective = norm.cdf(surrogate.predict(everyone) / surrogate.scale).mean(1)
        cost = objective[0] - objective[1:]
        rows.append({"surrogate": name, "objective": objective[0], "median_cost": np.median(cost),
                     "share_below_1e-4": np.mean(cost < 1e-4), "cheapest": np.sort(cost)[:5],
                     "twins_copies": np.sort(cost[twins["player_b"]])})
        print(f"{name}: objective at the full set {objective[0]:.4f}; removing one player costs a median "
              f"{np.median(cost):.1e}, less than 1e-4 for {np.mean(cost < 1e-4):.0%} of the players; the 5 "
              f"cheapest {np.round(np.sort(cost)[:5], 5).tolist()}; the twins' copies "
              f"{np.round(np.sort(cost[twins['player_b']]), 5).tolist()}")
        found = greedy_keep_sets(surrogate, sizes, classes, 1, 1.0, 0)
        keep += [{"method": name, "fraction": f, "draw": 0, "players": found[k].tolist()}
                 for f, k in zip(FRACTIONS, sizes)]
    print("\nthe greedy's keep-sets (class quotas, synergy threshold 1, seed 0: jobs/prune.py's defaults):")
    outcomes = twin_outcomes(pd.DataFrame(keep), twins)
    print(outcomes.to_string(index=False))
    save_results("twins_removal_costs", rows, outcomes=outcomes.to_dict("records"))


if __name__ == "__main__":
    main()
