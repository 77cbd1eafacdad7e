"""How the engines and methods compare: the faithfulness of the fits (held-out R^2, Spearman), the
holdout accuracy of the retrained keep-sets, and the sentences that judge them (paired differences
against the best baseline, with their 95% intervals; a retraining check's outcome).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..fit.results import default_engine, fitted_metrics
from ..renamed import renamed_keyword
from ..pruning import paired_differences, summarize
from ..sweep.run_data import AnalysisError
from .run_view import RunView


@renamed_keyword("method", "engine")
def worst_fitted_targets(view: RunView, k: int = 10, engine: str | None = None) -> pd.DataFrame:
    """The ``k`` targets of lowest held-out R^2 under ``engine``, with their faithfulness."""
    rows = fitted_metrics(view, engine or default_engine(view))
    worst = rows.nsmallest(k, "r2")[["target", "engine", "r2", "spearman", "noise_ceiling"]].reset_index(drop=True)
    worst.insert(1, "target_name", [view.target_name(int(t)) for t in worst["target"]])
    return worst


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def faithfulness_summary(view: RunView) -> pd.DataFrame:
    """Per engine: targets fitted, quantiles of held-out R^2 and the median Spearman (LDS)."""
    metrics = view.fit_metrics
    grouped = metrics.groupby("engine")
    out = grouped["r2"].quantile(list(QUANTILES)).unstack()
    out.columns = [f"R2 q{round(100 * q):02d}" if q != 0.5 else "R2 median" for q in QUANTILES]
    out.insert(0, "targets", grouped.size())
    out["Spearman (LDS) median"] = grouped["spearman"].median()
    return out


@renamed_keyword("methods", "engines")
def faithfulness_vs_models(view: RunView, budgets, engines=("linear", "proxyspex"), targets=None,
                           workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Median held-out R^2, Spearman (LDS) and R^2 as a fraction of the noise ceiling when each
    engine is fitted on only the first ``b`` models of the fit split, for each budget ``b``.
    Every budget is judged on the same held-out models (those of the fit stage's default split)."""
    from ..fit.stage import fit_and_evaluate

    models = view.models
    columns = np.arange(models.target_margins.shape[0]) if targets is None else np.asarray(targets)
    rows = []
    for budget in budgets:
        for engine in engines:
            try:
                _, metrics = fit_and_evaluate(models.masks, models.target_margins.T, models.mask_id, engine,
                                              workers=workers, progress=progress, fit_models=budget,
                                              columns=list(columns))
            except ValueError as err:
                raise AnalysisError(f"budget {budget}: {err}") from err
            rows.append({"models": budget, "engine": engine, "median_r2": metrics["r2"].median(),
                         "median_spearman": metrics["spearman"].median(),
                         "median_r2_of_ceiling": metrics["r2_fraction_of_ceiling"].median(),
                         "fit_seconds": metrics["seconds"].mean()})
    return pd.DataFrame(rows)


def pruning_table(view: RunView) -> pd.DataFrame:
    """Holdout accuracy per method and kept fraction: mean and 95% interval over seeds and draws."""
    return summarize(view.pruning)


def _methods_by_fraction(frame: pd.DataFrame, cells: list[str]) -> pd.DataFrame:
    """``cells`` (one per row of ``frame``) as a methods x kept fractions grid, largest fraction first."""
    grid = frame.assign(cell=cells).pivot(index="method", columns="fraction", values="cell")
    return grid[sorted(grid.columns, reverse=True)].rename_axis(columns=None)


def pruning_grid(view: RunView) -> pd.DataFrame:
    """Methods x kept fractions (columns), each cell ``mean [low, high]`` (95% interval) of holdout accuracy."""
    table = pruning_table(view)
    return _methods_by_fraction(table, [f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi
                                        in zip(table["mean"], table["ci_low"], table["ci_high"])])


def pruning_paired(view: RunView) -> pd.DataFrame:
    """Methods x kept fractions: difference to the best baseline, paired by seed, with its interval
    (the best baseline's own cell says ``best baseline``)."""
    paired = paired_differences(view.pruning)
    # the best baseline against itself says nothing: its cell names it instead of a difference
    return _methods_by_fraction(paired, ["best baseline" if m == b else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {b}"
                                         for m, d, lo, hi, b in zip(paired["method"], paired["difference"],
                                                                    paired["ci_low"], paired["ci_high"],
                                                                    paired["baseline"])])


def compare_sentence(subject: str, rows: pd.DataFrame, at: str, win: str = "beat the best baseline",
                     lose: str = "lose to the best baseline") -> str:
    """One clause judging paired differences (columns ``where``, ``difference``, ``ci_low``,
    ``ci_high`` and optionally ``baseline``; one row per setting ``where``, such as a kept
    fraction, written with the format ``at``): ``subject`` wins where the 95% interval lies
    above 0, loses where it lies below, ties elsewhere (an interval that contains 0, or none: a
    single seed). E.g. "interactions keep-sets beat the best baseline at 0.3 kept (+0.017 [+0.004,
    +0.030] vs linear) and tie elsewhere"."""
    def cell(row) -> str:
        versus = f" vs {row['baseline']}" if isinstance(row.get("baseline"), str) else ""
        return f"{at.format(row['where'])} ({row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]{versus})"

    above, below = rows[rows["ci_low"] > 0], rows[rows["ci_high"] < 0]
    ties = rows.drop(index=above.index.union(below.index))
    if above.empty and below.empty:
        return (f"{subject} do not {win}: they tie at {', '.join(at.format(w) for w in ties['where'])} (each 95% "
                f"interval of the paired difference contains 0)")
    parts = []
    if len(above):
        parts.append(f"{win} at " + ", ".join(cell(r) for _, r in above.iterrows()))
    if len(below):
        parts.append(f"{lose} at " + ", ".join(cell(r) for _, r in below.iterrows()))
    if len(ties):
        parts.append("tie elsewhere")
    return f"{subject} " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])


def pruning_conclusion(view: RunView) -> str:
    """One sentence from the retrained keep-sets: where each method that is not a baseline (the
    interaction keep-sets, ...) beats, ties or loses to the best baseline at each kept fraction,
    paired by seed (:func:`~datamodels.pruning.paired_differences`)."""
    from ..pruning.results import COMPARED_WITH

    paired = paired_differences(view.pruning)
    ours = [m for m in paired["method"].unique() if m not in COMPARED_WITH]
    if not ours:
        best = paired[paired["method"] == paired["baseline"]]
        return (f"only baselines were retrained ({', '.join(sorted(paired['method'].unique()))}); the best at the "
                f"smallest kept fraction, {best['fraction'].min():g}, is {best.loc[best['fraction'].idxmin(), 'baseline']}")
    clauses = []
    for method in sorted(ours):
        rows = paired[paired["method"] == method].sort_values("fraction", ascending=False)
        clauses.append(compare_sentence(f"{method} keep-sets", rows.rename(columns={"fraction": "where"}),
                                        "{:g} kept"))
    return "; ".join(clauses)


def faithfulness_conclusion(view: RunView) -> str:
    """One sentence: which engine predicts held-out margins best (median R^2), by how much."""
    metrics = view.fit_metrics
    medians = metrics.groupby("engine")["r2"].median().sort_values(ascending=False)
    best = medians.index[0]
    rows = metrics[metrics["engine"] == best]
    others = ", ".join(f"{m} {v:.3f}" for m, v in medians.iloc[1:].items())
    negative = int((rows["r2"] < 0).sum())
    return (f"{best} predicts held-out margins best, median held-out R^2 {medians.iloc[0]:.3f} over {len(rows):,} "
            f"targets" + (f" (against {others})" if others else "")
            + f"; {negative} of its targets {'is' if negative == 1 else 'are'} predicted worse than by a constant, "
              f"the mean margin (R^2 < 0)")


def keep_set_overlap(view: RunView) -> pd.DataFrame:
    """Jaccard index between the keep-sets of every two methods (first draws), per kept fraction."""
    rows = []
    first_draws = view.keep_sets[view.keep_sets["draw"] == 0]
    for fraction, group in first_draws.groupby("fraction"):
        sets = {m: set(p) for m, p in zip(group["method"], group["players"])}
        for a, b in itertools.combinations(sorted(sets), 2):
            rows.append({"fraction": fraction, "methods": f"{a} / {b}",
                         "jaccard": len(sets[a] & sets[b]) / len(sets[a] | sets[b])})
    return pd.DataFrame(rows).pivot(index="methods", columns="fraction", values="jaccard")


def check_conclusion(design: str, summary: pd.DataFrame, paired: pd.DataFrame | None) -> str:
    """One sentence from a retraining check's summary: the share of the fit's pairs confirmed (and
    of the controls), or where the interaction removals drop the margin more than linear's."""
    if design == "removal":
        if paired is None or paired.empty:
            best = summary.loc[summary.groupby("k")["drop"].idxmax()]
            return "the largest drop at each k is " + ", ".join(
                f"{m}'s at k = {k} ({d:+.3f})" for m, k, d in zip(best["method"], best["k"], best["drop"]))
        clauses = []
        for (method, against), rows in paired.groupby(["method", "against"], sort=False):
            rows = rows.sort_values("k").rename(columns={"k": "where", "lo": "ci_low", "hi": "ci_high"})
            owner = f"{method}'" if method.endswith("s") else f"{method}'s"
            clauses.append(compare_sentence(f"{owner} removals", rows, "k = {}",
                                            win=f"drop the margin more than {against}'s",
                                            lose=f"drop the margin less than {against}'s"))
        return "; ".join(clauses)
    fitted = summary[summary["group"] != "controls"]
    row = fitted.iloc[-1]  # the stratified estimate over every stratum, where there are strata
    rate = "stratified rate" if "stratified" in str(row["group"]) else "rate"
    sentence = (f"{int(row['confirmed'])} of {int(row['pairs'])} fitted pairs are confirmed "
                f"({rate} {row['rate']:.2f} [{row['lo']:.2f}, "
                f"{row['hi']:.2f}]), measured/predicted slope {row['slope']:.2f}")
    controls = summary[summary["group"] == "controls"]
    if len(controls):
        c = controls.iloc[0]
        sentence += f", and {int(c['confirmed'])} of {int(c['pairs'])} random controls (false alarms)"
    return sentence
