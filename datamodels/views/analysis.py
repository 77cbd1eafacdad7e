"""Views of a run for a researcher: DataFrames and matplotlib figures, nothing computed twice.

Everything reads the stage outputs of one run folder (:class:`~datamodels.run.folder.RunFolder`)
through :class:`RunView`, with the stages' own checked readers:

- the sweep: ``run.json``, ``config.json`` and the fit-ready layout of its shards
  (:mod:`datamodels.store.fit_ready`: margins memory-mapped, one target read at a time);
- ``fit/interactions.parquet``: one row per (target, method, interaction): ``members`` (list of
  players), ``order``, ``mobius``, ``kind`` (main / synergy / redundancy);
- ``fit/fit_metrics.parquet``: faithfulness per (target, method);
- ``prune/keep_sets.parquet``, ``prune/evaluation.parquet``: keep-sets, and the holdout
  accuracy of each retrained on (method, fraction, seed).

The notebooks under ``analysis/`` and the report (:mod:`datamodels.views.report`) only call these
functions. At CIFAR-10 scale (10,000 targets, millions of fitted terms) the views choose: terms
and targets are ranked by ``|m(S)|`` in units of the target's residual sd
(:func:`term_strength`), and the tables return the top ``k``. A run without its dataset (a
planted sweep, an import without the archive) names players by index and class instead of
drawing their images.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import StoreError
from ..fit.results import FitView, default_method, fitted_metrics, residual_sd
from ..pruning import paired_differences, summarize
from ..sweep.run_data import AnalysisError
from ..tables import read_frame

KINDS = ("main", "synergy", "redundancy")


def _repository_root() -> Path | None:
    """The checkout this package runs from (the folder holding ``conf/`` and ``jobs/``), if any:
    the package's parent for an editable install, else the nearest such folder above the cwd."""
    for folder in (Path(__file__).resolve().parents[2], *Path.cwd().resolve().parents, Path.cwd().resolve()):
        if (folder / "conf").is_dir() and (folder / "jobs").is_dir():
            return folder
    return None


def run_dir_from_environment(default: str = "runs/demo", variable: str = "DATAMODELS_RUN") -> Path:
    """The run folder a notebook opens: ``$DATAMODELS_RUN``, else ``default`` (the demo's run).

    An absolute path is taken as it is. A relative one is resolved against the current directory
    (where the user launched Python from) and, when nothing is there, against the repository's
    root: Jupyter runs a notebook with its own folder (``analysis/``) as the current directory,
    so ``DATAMODELS_RUN=runs/mine`` typed at the root still finds ``runs/mine``. Neither there:
    an :class:`AnalysisError` names both places it looked.
    """
    given = os.environ.get(variable) or default
    path = Path(given).expanduser()
    if path.is_absolute():
        return path
    root = _repository_root()
    tried = [Path.cwd() / path] + ([root / path] if root is not None and root != Path.cwd().resolve() else [])
    for candidate in tried:
        if candidate.exists():
            return candidate.resolve()
    source = f"{variable}={given}" if os.environ.get(variable) else f"the default run {given} ({variable} is not set)"
    raise AnalysisError(f"{source}: no such folder in the current directory ({tried[0]})"
                        + (f" nor in the repository's root ({tried[1]})" if len(tried) > 1 else "")
                        + f"; set {variable} to a run folder (absolute, or relative to either)")


@dataclass
class RunView(FitView):
    """Lazy access to everything one run folder holds: the fit (:class:`~datamodels.fit.results.FitView`)
    and the tables of the stages after it."""

    @cached_property
    def keep_sets(self) -> pd.DataFrame:
        return self._table(self.folder.keep_sets, "prune (jobs/prune.py)")

    @cached_property
    def pruning(self) -> pd.DataFrame:
        return self._table(self.folder.evaluation, "pruning evaluation (jobs/evaluate_pruning.py)")

    def ablation(self, name: str = "pairs") -> pd.DataFrame:
        """A retraining check's measured checks (``jobs/ablate.py``; ``name`` its folder under
        ``ablations/``: ``pairs``, ``removal-alpha``, ``removal-full``, ``heldout`` or ``ablate.name``)."""
        try:
            checks, meta = read_frame(self.folder.ablation_results(name)[0], "ablate (jobs/ablate.py)")
        except StoreError as err:
            raise AnalysisError(f"{err} (for {self.run_dir})") from err
        checks.attrs["design"] = meta["design"]  # pairs, removal or heldout
        return checks

    def ablations(self) -> list[str]:
        """The retraining checks of this run that have been measured."""
        return sorted(p.name for p in self.folder.ablations.glob("*") if self.folder.ablation_results(p.name)[0].exists())


# --------------------------------------------------------------------------- tables


def term_strength(view: RunView, method: str | None = None, orders=(1, 2, 3)) -> pd.DataFrame:
    """Every fitted term of ``method`` of the given orders, with ``strength = |m(S)| / tau_t``: its
    size in units of its target's residual sd (:func:`residual_sd`), so that a term of a target
    the fit explains well and one of a noisy target are compared on the scale of what each
    target's fit can be trusted to."""
    method = method or default_method(view)
    tau = residual_sd(view, method)
    rows = judge_triples(view, view.terms(method=method, orders=orders, members=False), method)
    return rows.assign(strength=rows["mobius"].abs().to_numpy() / tau.reindex(rows["target"]).to_numpy())


def _members(view: RunView, rows: pd.Index, order: int) -> np.ndarray:
    """The members of the table's ``rows`` (all of one ``order``), sorted, as ``[len(rows), order]`` ints."""
    members = view.interactions_arrow.column("members").take(pa.array(rows, pa.int64())).combine_chunks()
    return np.sort(members.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(len(rows), order), 1)


def judge_triples(view: RunView, rows: pd.DataFrame, method: str) -> pd.DataFrame:
    """``rows`` (of :meth:`RunView.terms`) with each triple's ``kind`` judged as a group, the
    fit's own label kept in ``fit_kind``.

    The fit labels a triple ``S`` as it labels a pair: ``m(S)`` against the sum of its members'
    main effects ``M``. For a triple that misreads the commonest pattern: three look-alikes of
    which any one suffices (``f = 1 - (1-x_a)(1-x_b)(1-x_c)``) have ``m = +1`` on each member,
    ``-1`` on each pair and ``+1`` on the triple, whose sign agrees with ``M``: the fit calls the
    triple synergy while its pairs, rightly, are redundancy. So the views judge a triple by the
    pair rule (:func:`~datamodels.interactions.interaction_table`: same sign as the main effects:
    synergy; opposite: redundancy) applied to the whole group and to its parts:

    - **synergy**: ``m(S)`` has the sign of ``M`` (the fit's label) and none of its fitted pairs
      is redundant: the three do more together, and no two of them cover for each other;
    - **redundancy**: the group's whole interaction, ``m(S)`` plus its fitted pairs' ``m``, has
      the sign opposite to ``M``: together they do less than the sum of their main effects (the
      look-alikes above: ``+1 - 3 = -2`` against ``M = 3``);
    - **mixed**: neither (e.g. a synergy pair whose triple takes part of it back); shown under
      neither caption.
    """
    triples = rows.index[rows["order"].to_numpy() == 3]
    if len(triples) == 0:
        return rows
    members = _members(view, triples, 3)
    targets = rows.loc[triples, "target"].to_numpy(np.int64)
    lower = view.terms(method=method, orders=[1, 2], members=False)
    lower = lower[lower["target"].isin(np.unique(targets))]
    mains, pairs = lower[lower["order"] == 1], lower[lower["order"] == 2]
    main = pd.Series(mains["mobius"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [mains["target"].to_numpy(np.int64), _members(view, mains.index, 1)[:, 0]]))
    pair_members = _members(view, pairs.index, 2)
    pair_index = pd.MultiIndex.from_arrays([pairs["target"].to_numpy(np.int64), pair_members[:, 0],
                                            pair_members[:, 1]])
    pair = pd.Series(pairs["mobius"].to_numpy(), index=pair_index)
    redundant_pair = pd.Series((pairs["kind"] == "redundancy").to_numpy(), index=pair_index)
    net = sum(main.reindex(pd.MultiIndex.from_arrays([targets, members[:, c]])).fillna(0.0).to_numpy()
              for c in range(3))
    sub = [pd.MultiIndex.from_arrays([targets, members[:, a], members[:, b]]) for a, b in ((0, 1), (0, 2), (1, 2))]
    group = rows.loc[triples, "mobius"].to_numpy(float) + sum(pair.reindex(i).fillna(0.0).to_numpy() for i in sub)
    any_redundant = np.any([redundant_pair.reindex(i).fillna(False).to_numpy(bool) for i in sub], axis=0)
    fit_kind = rows.loc[triples, "kind"].to_numpy()
    kind = np.where((fit_kind == "synergy") & ~any_redundant, "synergy",
                    np.where(group * net < 0, "redundancy", "mixed"))
    out = rows.assign(fit_kind=rows["kind"])
    out.loc[triples, "kind"] = kind
    return out


def strongest_pair(view: RunView, kind: str, method: str | None = None,
                   strength: pd.DataFrame | None = None) -> pd.Series | None:
    """The pair of ``kind`` (synergy or redundancy, by the fit's pair rule) whose ``|m|`` is
    largest in units of its target's residual sd (:func:`term_strength`; ``strength``: its table,
    when the caller has it), named; None when the fit has none. The fit's console summary
    (:func:`datamodels.fit.stage.summary`) and the report name the same pair."""
    rows = term_strength(view, method, orders=(2,)) if strength is None else strength
    rows = rows[(rows["order"] == 2) & (rows["kind"] == kind)]
    if rows.empty:
        return None
    top = _named(view, rows.loc[[rows["strength"].idxmax()]]).iloc[0]
    return top


def pair_sentence(view: RunView, kind: str, row: pd.Series | None, method: str) -> str:
    """One sentence naming the strongest pair of ``kind`` (:func:`strongest_pair`)."""
    if row is None:
        return f"the {method} fit has no {kind} pair"
    members = ", ".join(str(int(p)) for p in row["members"])
    return (f"the strongest {kind} pair ({method}, by |m| / residual sd) is players [{members}] on "
            f"{view.target_name(int(row['target']))}: {row['players']}, m = {row['mobius']:+.3f}, "
            f"{row['strength']:.2f} residual sd")


def _named(view: RunView, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (of :meth:`RunView.terms`) with their members, and the players' classes and names
    (``player 123 (class 4)``)."""
    if "members" not in rows:
        members = view.interactions_arrow.column("members").take(pa.array(rows.index, pa.int64())).to_pylist()
        rows = rows.assign(members=members)
    out = rows.reset_index(drop=True).copy()
    out["classes"] = [[view.player_class(int(p)) for p in members] for members in out["members"]]
    out["players"] = [" + ".join(view.player_name(int(p)) for p in members) for members in out["members"]]
    return out


def top_effects(view: RunView, target: int, kind: str | None = None, k: int = 10, method: str = "proxyspex",
                order: int | None = None) -> pd.DataFrame:
    """The ``k`` strongest (by |Möbius|) interactions of one target, optionally of one kind/order."""
    fitted = fitted_metrics(view, method)["target"]
    if target not in set(fitted):
        known = sorted(int(t) for t in fitted)
        raise AnalysisError(f"target {target} has no {method} fit (fitted targets: "
                            f"{known[:10]}{' ...' if len(known) > 10 else ''})")
    rows = view.terms(method=method, target=target)
    rows = judge_triples(view, rows[rows["order"] > 0], method)
    if kind is not None:
        if kind not in KINDS:
            raise AnalysisError(f"kind must be one of {KINDS}, got {kind!r}")
        rows = rows[rows["kind"] == kind]
    if order is not None:
        rows = rows[rows["order"] == order]
    return _named(view, rows.reindex(rows["mobius"].abs().sort_values(ascending=False).index).head(k))


def strongest_terms(view: RunView, k: int = 20, method: str | None = None, orders=(2, 3),
                    strength: pd.DataFrame | None = None, per_target: int | None = None) -> pd.DataFrame:
    """The ``k`` strongest terms over all targets by :func:`term_strength` (``strength``: its table,
    when the caller has it already), pairs and triples by default, with the players named; at
    most ``per_target`` of one target (None: no limit), so that a few targets with many strong
    terms do not fill the table."""
    rows = term_strength(view, method, orders) if strength is None else strength
    rows = rows[rows["order"].isin(list(orders))].sort_values("strength", ascending=False, kind="stable")
    if per_target is not None:
        rows = rows.groupby("target", sort=False).head(per_target)
    top = rows.head(k)
    out = _named(view, top)
    out.insert(1, "target_name", [view.target_name(int(t)) for t in out["target"]])
    return out


def strongest_targets(view: RunView, kind: str, k: int = 3, method: str | None = None,
                      strength: pd.DataFrame | None = None) -> list[int]:
    """The ``k`` targets whose strongest term of ``kind`` (a player for ``main``, else a pair or
    triple) is largest relative to the target's residual sd (``strength``: :func:`term_strength`'s
    table of ``method``, when the caller has it already)."""
    if kind not in KINDS:
        raise AnalysisError(f"kind must be one of {KINDS}, got {kind!r}")
    rows = term_strength(view, method) if strength is None else strength
    rows = rows[rows["kind"] == kind]
    best = rows.groupby("target")["strength"].max()
    return [int(t) for t in best.nlargest(k).index]


def worst_fitted_targets(view: RunView, k: int = 10, method: str | None = None) -> pd.DataFrame:
    """The ``k`` targets of lowest held-out R^2 under ``method``, with their faithfulness."""
    rows = fitted_metrics(view, method or default_method(view))
    worst = rows.nsmallest(k, "r2")[["target", "method", "r2", "spearman", "noise_ceiling"]].reset_index(drop=True)
    worst.insert(1, "target_name", [view.target_name(int(t)) for t in worst["target"]])
    return worst


def target_summary(view: RunView, target: int) -> pd.Series:
    """Label, how often models get it right, and its margin distribution over the sweep."""
    margins = view.margins(target)
    return pd.Series({"target": target, "label": view.target_label(target),
                      "fraction_correct": float((margins > 0).mean()), "mean_margin": float(margins.mean()),
                      "std_margin": float(margins.std()), "models": len(margins)})


def class_pair_patterns(view: RunView, kind: str, method: str = "proxyspex") -> pd.DataFrame:
    """Across targets: how often pairs of each (class, class) combination are synergistic or
    redundant, with the target's own class as the row's first level (where the targets' classes
    are known). Needs the players' classes."""
    if view.player_labels is None:
        raise AnalysisError(f"class pairs need the players' classes: {view.run_dir} has no dataset linked and no "
                            f"labels file ({', '.join(str(p) for p in view.folder.label_files)})")
    pairs = view.terms(method=method, orders=[2], kind=kind, members=False)
    members = view.interactions_arrow.column("members").take(pa.array(pairs.index, pa.int64())).combine_chunks()
    members = members.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(len(pairs), 2)
    names = np.asarray(view.class_names if view.class_names is not None
                       else [str(c) for c in range(int(view.player_labels.max()) + 1)], dtype=object)
    classes = np.sort(view.player_labels[members], axis=1)  # a pair is unordered: (cat, dog) = (dog, cat)
    frame = pd.DataFrame({"class_a": names[classes[:, 0]], "class_b": names[classes[:, 1]]})
    if view.sweep_run is not None:
        target_labels = view.sweep_run.data.labels("target")[pairs["target"].to_numpy(np.int64)]
        frame.insert(0, "target_class", names[target_labels])
    return frame.value_counts().rename("pairs").reset_index()


def term_counts(view: RunView) -> pd.DataFrame:
    """How many terms each method fitted, by order and kind (counted in Arrow: millions of rows)."""
    counts = view.interactions_arrow.group_by(["method", "order", "kind"]).aggregate([([], "count_all")])
    return counts.to_pandas().rename(columns={"count_all": "terms"}).sort_values(
        ["method", "order", "kind"], ignore_index=True)


QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def faithfulness_summary(view: RunView) -> pd.DataFrame:
    """Per method: targets fitted, quantiles of held-out R^2 and the median Spearman (LDS)."""
    metrics = view.fit_metrics
    grouped = metrics.groupby("method")
    out = grouped["r2"].quantile(list(QUANTILES)).unstack()
    out.columns = [f"R2 q{round(100 * q):02d}" if q != 0.5 else "R2 median" for q in QUANTILES]
    out.insert(0, "targets", grouped.size())
    out["Spearman (LDS) median"] = grouped["spearman"].median()
    return out


def faithfulness_vs_models(view: RunView, budgets, methods=("linear", "proxyspex"), targets=None,
                           workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Median held-out R^2, Spearman (LDS) and R^2 as a fraction of the noise ceiling when each
    method is fitted on only the first ``b`` models of the fit split, for each budget ``b``.
    Every budget is judged on the same held-out models (those of the fit stage's default split)."""
    from ..fit.stage import fit_and_evaluate

    models = view.models
    columns = np.arange(models.margins.shape[0]) if targets is None else np.asarray(targets)
    rows = []
    for budget in budgets:
        for method in methods:
            try:
                _, metrics = fit_and_evaluate(models.masks, models.margins.T, models.mask_id, method,
                                              workers=workers, progress=progress, fit_models=budget,
                                              columns=list(columns))
            except ValueError as err:
                raise AnalysisError(f"budget {budget}: {err}") from err
            rows.append({"models": budget, "method": method, "median_r2": metrics["r2"].median(),
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
    """One sentence: which method predicts held-out margins best (median R^2), by how much."""
    metrics = view.fit_metrics
    medians = metrics.groupby("method")["r2"].median().sort_values(ascending=False)
    best = medians.index[0]
    rows = metrics[metrics["method"] == best]
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


# --------------------------------------------------------------------------- figures


def _show(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image.squeeze(), cmap="gray_r" if image.shape[-1] == 1 else None, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_target(view: RunView, target: int):
    """The target image (where the run has images) and the distribution of its margin over the sweep's models."""
    summary = target_summary(view, target)
    if view.has_images:
        fig, (ax_img, ax_hist) = plt.subplots(1, 2, figsize=(7, 2.6), gridspec_kw={"width_ratios": [1, 2.5]})
        _show(ax_img, view.target_image(target), view.target_name(target))
    else:
        fig, ax_hist = plt.subplots(figsize=(5, 2.6))
    ax_hist.hist(view.margins(target), bins=40, color="tab:blue")
    ax_hist.axvline(0, color="black", lw=0.8)
    ax_hist.set_xlabel("margin (correct logit - best other)")
    ax_hist.set_ylabel("models")
    where = "" if view.has_images else f"{view.target_name(target)}: "
    ax_hist.set_title(f"{where}correct in {summary['fraction_correct']:.0%} of {summary['models']} models", fontsize=9)
    fig.tight_layout()
    return fig


def _empty_figure(text: str):
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def plot_interactions(view: RunView, target: int, kind: str, k: int = 4, method: str = "proxyspex"):
    """The ``k`` strongest interactions of one kind of one target. With images: rows of images, the
    target then the members (the first example of a player that is a group), titled with class and
    Möbius. Without: one bar per term, its Möbius coefficient, labelled with the players' names."""
    rows = top_effects(view, target, kind=kind, k=k, method=method)
    noun = "interactions" if kind != "main" else "effects"
    if rows.empty:
        return _empty_figure(f"no {kind} {noun} found for target {target}")
    if not view.has_images:
        fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(rows)))
        y = np.arange(len(rows))[::-1]
        ax.barh(y, rows["mobius"], color=np.where(rows["mobius"] > 0, "tab:blue", "tab:red"))
        ax.set_yticks(y, [name.replace(" + ", "\n+ ") if len(name) > 40 else name for name in rows["players"]],
                      fontsize=7)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_xlabel("Möbius coefficient m (margin)")
        ax.set_title(f"strongest {kind} {noun} of {view.target_name(target)}", fontsize=10)
        fig.tight_layout()
        return fig
    width = 1 + int(rows["order"].max())
    fig, axes = plt.subplots(len(rows), width, figsize=(1.5 * width, 1.6 * len(rows)), squeeze=False)
    train_images = view.sweep_run.data.images("train")
    for r, row in rows.iterrows():
        # the coefficient belongs to the whole term: it goes beside the target, not over one member
        _show(axes[r, 0], view.target_image(target), f"target: {view.target_label(target)}\n"
              f"{'main' if row['order'] == 1 else kind} m={row['mobius']:+.3f}")
        for c, (player, cls) in enumerate(zip(row["members"], row["classes"]), start=1):
            size = view.player_size[player]
            title = f"#{player} ({cls})" + (f", 1 of {size}" if size > 1 else "")
            _show(axes[r, c], train_images[view.first_example[player]], title)
        for c in range(1 + len(row["members"]), width):
            axes[r, c].axis("off")
    fig.suptitle(f"strongest {kind} {noun} of target {target}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_player(view: RunView, player: int, max_images: int = 30):
    """Every example of one player (up to ``max_images``, the title says how many there are)."""
    view._need_images(f"the images of player {player}")
    examples = view.player_examples(player)
    shown = examples[:max_images]
    cols = min(10, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(0.9 * cols, 1.1 * rows + 0.4), squeeze=False)
    train_images, labels = view.sweep_run.data.images("train"), view.sweep_run.data.labels("train")
    classes = view.sweep_run.data.dataset.classes
    for ax, example in zip(axes.flat, shown):
        _show(ax, train_images[example], classes[labels[example]])
    for ax in axes.flat[len(shown):]:
        ax.axis("off")
    more = f", {len(shown)} shown" if len(shown) < len(examples) else ""
    fig.suptitle(f"player #{player}: {len(examples)} training example{'s' if len(examples) > 1 else ''}{more}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_candidates(view: RunView, groups: pd.DataFrame, k: int = 6, max_members: int = 8):
    """The ``k`` first of ``groups`` (the candidate duplicate groups, best first, as
    :func:`datamodels.pruning.duplicates.read_candidates` reads them), one row each: the first image of
    each member (up to ``max_members``), side by side, titled with the player and its class. Needs
    the run's images. The caller reads the groups: :mod:`datamodels.pruning.duplicates` reads runs
    through this module, so this module cannot import it."""
    view._need_images("the images of the candidate duplicates")
    top = groups.head(k)
    cols = max(2, min(max_members, int(top["size"].max()) if len(top) else 2))
    fig, axes = plt.subplots(max(len(top), 1), cols, figsize=(1.1 * cols, 1.3 * max(len(top), 1) + 0.3),
                             squeeze=False)
    images, classes = view.sweep_run.data.images("train"), view.class_names
    for row, (members, score) in enumerate(zip(top["members"], top["score"])):
        for col, player in enumerate(members[:cols]):
            label = view.player_labels[player]
            _show(axes[row, col], images[view.first_example[player]], f"#{player} {classes[label]}")
        axes[row, 0].set_ylabel(f"{row + 1}: {score:.1f}", fontsize=8)
    for ax in axes.flat:
        if not ax.images:
            ax.axis("off")
    fig.suptitle("candidate duplicate groups, best first (row label: rank and score)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_faithfulness(view: RunView):
    """Held-out R^2 of every fitted target: one histogram per method (as many targets as there are,
    one figure of fixed size)."""
    metrics = view.fit_metrics
    fig, ax = plt.subplots(figsize=(5.5, 3))
    low = min(0.0, float(np.nanmin(metrics["r2"]))) if len(metrics) else 0.0
    bins = np.linspace(max(low, -1.0), 1.0, 41)  # R^2 below -1 goes into the first bin
    for method, rows in metrics.groupby("method"):
        ax.hist(np.clip(rows["r2"], bins[0], 1.0), bins=bins, histtype="step", lw=1.5,
                label=f"{method} ({len(rows):,} targets)")
    ax.set_xlabel("held-out R^2 per target")
    ax.set_ylabel("targets")
    ax.axvline(0, color="black", lw=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
