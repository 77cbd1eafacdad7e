"""Holdout accuracy of the keep-sets, summarised: each method's mean and 95% interval per kept
fraction, and each method's difference to the best baseline paired by training seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .baselines import BASELINES

# What a surrogate method is compared with: the linear datamodel and TRAK given the same objective, and
# the baselines.
COMPARED_WITH = ("linear", "trak", *BASELINES)


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and two-sided 95% t-interval of independent values."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def summarize(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Holdout accuracy per method and fraction: models, mean, 95% t-interval over seeds (draws
    and seeds together for the randomised methods)."""
    rows = [(method, fraction, len(group), *_interval(group["holdout_acc"].to_numpy()))
            for (method, fraction), group in evaluation.groupby(["method", "fraction"])]
    return (pd.DataFrame(rows, columns=["method", "fraction", "models", "mean", "ci_low", "ci_high"])
            .sort_values(["fraction", "mean"], ascending=[False, False], ignore_index=True))


def paired_differences(evaluation: pd.DataFrame, against: tuple[str, ...] = COMPARED_WITH) -> pd.DataFrame:
    """Each method's accuracy minus that of the best method of ``against`` at the same fraction
    (the one of highest mean; by default the baselines), paired by training seed, with a 95%
    t-interval of the mean difference."""
    rows = []
    for fraction, group in evaluation.groupby("fraction"):
        by_seed = group.pivot_table(index="seed", columns="method", values="holdout_acc")
        baselines = [m for m in against if m in by_seed]
        if not baselines:
            continue
        best = max(baselines, key=lambda m: by_seed[m].mean())
        for method in by_seed:
            difference = (by_seed[method] - by_seed[best]).dropna().to_numpy()
            rows.append((fraction, method, best, len(difference), *_interval(difference)))
    return (pd.DataFrame(rows, columns=["fraction", "method", "baseline", "pairs", "difference", "ci_low", "ci_high"])
            .sort_values(["fraction", "difference"], ascending=[False, False], ignore_index=True))


def plot_pruning(table: pd.DataFrame):
    """Holdout accuracy against the fraction of the training set kept, per method (mean and 95%
    interval): ``table`` is :func:`summarize`'s."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for method, rows in table.groupby("method"):
        rows = rows.sort_values("fraction")
        spread = np.nan_to_num(np.stack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]))
        ax.errorbar(rows["fraction"], rows["mean"], yerr=spread, marker="o", capsize=3, label=method)
    ax.set_xlabel("fraction of training players kept")
    ax.set_ylabel("holdout accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
