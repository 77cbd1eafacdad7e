"""Views of a run for a researcher: DataFrames and matplotlib figures, nothing computed twice.

Everything reads the stage outputs of one run folder (:class:`~datamodels.run_folder.RunFolder`)
through :class:`RunView`, with the stages' own checked readers:

- the sweep: ``run.json``, ``config.json`` and the fit-ready layout of its shards
  (:mod:`datamodels.fit_ready`: margins memory-mapped, one target read at a time);
- ``fit/interactions.parquet``: one row per (target, method, interaction): ``members`` (list of
  players), ``order``, ``mobius``, ``kind`` (main / synergy / redundancy);
- ``fit/fit_metrics.parquet``: faithfulness per (target, method);
- ``prune/keep_sets.parquet``, ``prune/evaluation.parquet``: keep-sets, and the holdout
  accuracy of each retrained on (method, fraction, seed).

The notebooks under ``analysis/`` and the report (:mod:`datamodels.report`) only call these
functions.
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

from .errors import StoreError, UserError
from .fit_ready import FitReady, open_fit_ready
from .fitting import STAGE as FIT_STAGE
from .pruning import paired_differences, summarize
from .run_folder import RunFolder
from .sweep import SweepRun
from .tables import read_frame

KINDS = ("main", "synergy", "redundancy")


class AnalysisError(UserError):
    """A run folder lacks the output a view needs."""


@dataclass
class RunView:
    """Lazy access to everything one run folder holds."""

    run_dir: Path

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> "RunView":
        folder = RunFolder(run_dir)
        if not folder.run_json.exists():
            raise AnalysisError(str(folder.no_sweep_error()))
        return cls(folder.root)

    @cached_property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    def _table(self, path: Path, stage: str) -> pd.DataFrame:
        try:
            return read_frame(path, stage)[0]
        except StoreError as err:
            raise AnalysisError(f"{err} (for {self.run_dir})") from err

    @cached_property
    def sweep_run(self) -> SweepRun:
        return SweepRun.open(self.run_dir)

    @cached_property
    def models(self) -> FitReady:
        """The collected models: packed masks and target-major margins, memory-mapped."""
        try:
            return open_fit_ready(self.run_dir, progress=False)
        except StoreError as err:
            raise AnalysisError(str(err)) from err

    def margins(self, target: int) -> np.ndarray:
        """One target's margin in every collected model."""
        return np.asarray(self.models.margins[target], dtype=float)

    @cached_property
    def interactions(self) -> pd.DataFrame:
        return self._table(self.folder.interactions(), FIT_STAGE)

    @cached_property
    def fit_metrics(self) -> pd.DataFrame:
        return self._table(self.folder.fit_metrics(), FIT_STAGE)

    @cached_property
    def keep_sets(self) -> pd.DataFrame:
        return self._table(self.folder.keep_sets, "prune (jobs/prune.py)")

    @cached_property
    def pruning(self) -> pd.DataFrame:
        return self._table(self.folder.evaluation, "pruning evaluation (jobs/evaluate_pruning.py)")

    def target_image(self, t: int) -> np.ndarray:
        data = self.sweep_run.data
        return data.images("target")[t]

    def target_label(self, t: int) -> str:
        data = self.sweep_run.data
        return data.dataset.classes[data.labels("target")[t]]

    @cached_property
    def first_example(self) -> np.ndarray:
        """For each player, the index (into the train split) of its first example: what figures show."""
        return np.unique(self.sweep_run.groups, return_index=True)[1]

    @cached_property
    def player_size(self) -> np.ndarray:
        """For each player, how many training examples it switches on or off together."""
        return np.bincount(self.sweep_run.groups)

    def player_examples(self, player: int) -> np.ndarray:
        """Indices (into the train split) of every example of a player."""
        return np.flatnonzero(self.sweep_run.groups == player)

    def player_class(self, player: int) -> str:
        data = self.sweep_run.data
        return data.dataset.classes[data.labels("train")[self.first_example[player]]]

    def methods(self) -> list[str]:
        return sorted(self.interactions["method"].unique())


# --------------------------------------------------------------------------- tables


def top_effects(view: RunView, target: int, kind: str | None = None, k: int = 10, method: str = "proxyspex",
                order: int | None = None) -> pd.DataFrame:
    """The ``k`` strongest (by |Möbius|) interactions of one target, optionally of one kind/order."""
    metrics = view.fit_metrics
    fitted = metrics.loc[metrics["method"] == method, "target"]
    if target not in set(fitted):
        known = sorted(int(t) for t in fitted)
        raise AnalysisError(f"target {target} has no {method} fit (fitted targets: "
                            f"{known[:10]}{' ...' if len(known) > 10 else ''})")
    table = view.interactions
    rows = table[(table["target"] == target) & (table["method"] == method)]
    rows = rows[rows["order"] > 0]
    if kind is not None:
        if kind not in KINDS:
            raise AnalysisError(f"kind must be one of {KINDS}, got {kind!r}")
        rows = rows[rows["kind"] == kind]
    if order is not None:
        rows = rows[rows["order"] == order]
    out = rows.reindex(rows["mobius"].abs().sort_values(ascending=False).index).head(k).copy()
    out["classes"] = [[view.player_class(p) for p in members] for members in out["members"]]
    return out.reset_index(drop=True)


def target_summary(view: RunView, target: int) -> pd.Series:
    """Label, how often models get it right, and its margin distribution over the sweep."""
    margins = view.margins(target)
    return pd.Series({"target": target, "label": view.target_label(target),
                      "fraction_correct": float((margins > 0).mean()), "mean_margin": float(margins.mean()),
                      "std_margin": float(margins.std()), "models": len(margins)})


def class_pair_patterns(view: RunView, kind: str, method: str = "proxyspex") -> pd.DataFrame:
    """Across targets: how often pairs of each (class, class) combination are synergistic or
    redundant, with the target's own class as the row's first level."""
    table = view.interactions
    pairs = table[(table["method"] == method) & (table["order"] == 2) & (table["kind"] == kind)]
    records = [(view.target_label(t), *sorted((view.player_class(a), view.player_class(b))))
               for t, (a, b) in zip(pairs["target"], pairs["members"])]
    frame = pd.DataFrame(records, columns=["target_class", "class_a", "class_b"])
    return frame.value_counts().rename("pairs").reset_index()


def faithfulness_summary(view: RunView) -> pd.DataFrame:
    """Median and quartiles of held-out R^2 and Spearman (LDS) per method."""
    metrics = view.fit_metrics
    return metrics.groupby("method")[["r2", "spearman"]].describe(percentiles=[0.25, 0.5, 0.75])[
        [("r2", "25%"), ("r2", "50%"), ("r2", "75%"), ("spearman", "50%")]]


def faithfulness_vs_models(view: RunView, budgets, methods=("linear", "proxyspex"), targets=None,
                           workers: int = 1, progress: bool = False) -> pd.DataFrame:
    """Median held-out R^2, Spearman (LDS) and R^2 as a fraction of the noise ceiling when each
    method is fitted on only the first ``b`` models of the fit split, for each budget ``b``.
    Every budget is judged on the same held-out models (those of the fit stage's default split)."""
    from .fitting import fit_and_evaluate

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
    """Methods x kept fractions: difference to the best baseline, paired by seed, with its interval."""
    paired = paired_differences(view.pruning)
    paired = paired[paired["method"] != paired["baseline"]]  # the best baseline against itself says nothing
    return _methods_by_fraction(paired, [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] vs {b}" for d, lo, hi, b
                                         in zip(paired["difference"], paired["ci_low"], paired["ci_high"],
                                                paired["baseline"])])


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
    """The target image and the distribution of its margin over the sweep's models."""
    summary = target_summary(view, target)
    fig, (ax_img, ax_hist) = plt.subplots(1, 2, figsize=(7, 2.6), gridspec_kw={"width_ratios": [1, 2.5]})
    _show(ax_img, view.target_image(target), f"target {target}: {summary['label']}")
    ax_hist.hist(view.margins(target), bins=40, color="tab:blue")
    ax_hist.axvline(0, color="black", lw=0.8)
    ax_hist.set_xlabel("margin (correct logit - best other)")
    ax_hist.set_ylabel("models")
    ax_hist.set_title(f"correct in {summary['fraction_correct']:.0%} of {summary['models']} models", fontsize=9)
    fig.tight_layout()
    return fig


def plot_interactions(view: RunView, target: int, kind: str, k: int = 4, method: str = "proxyspex"):
    """Rows of images: the target, then the members of each of its ``k`` strongest interactions
    of one kind (the first example of a player that is a group), titled with class and Möbius."""
    rows = top_effects(view, target, kind=kind, k=k, method=method)
    if rows.empty:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no {kind} interactions found for target {target}", ha="center", va="center")
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
    fig.suptitle(f"strongest {kind} {'interactions' if kind != 'main' else 'effects'} of target {target}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def plot_player(view: RunView, player: int, max_images: int = 30):
    """Every example of one player (up to ``max_images``, the title says how many there are)."""
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


def plot_faithfulness(view: RunView):
    """Held-out R^2 per target, one box per method."""
    metrics = view.fit_metrics
    methods = sorted(metrics["method"].unique())
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.boxplot([metrics.loc[metrics["method"] == m, "r2"] for m in methods], tick_labels=methods)
    ax.set_ylabel("held-out R^2 per target")
    ax.axhline(0, color="black", lw=0.6)
    fig.tight_layout()
    return fig


def strongest_targets(view: RunView, kind: str, k: int = 3, method: str = "proxyspex") -> list[int]:
    """Targets whose strongest term of ``kind`` (a player for ``main``, else a pair or triple) has
    the largest |Möbius| coefficient."""
    table = view.interactions
    pairs = table[(table["method"] == method) & (table["order"] >= 1) & (table["kind"] == kind)]
    best = pairs.assign(size=pairs["mobius"].abs()).groupby("target")["size"].max()
    return [int(t) for t in best.sort_values(ascending=False).index[:k]]
