"""The figures of a retraining check: measured against predicted pairs, and removal curves."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_pairs(checks: pd.DataFrame, measured_on: str = "retrained"):
    """Measured double difference against the fit's prediction, with 95% error bars: the fit's
    pairs coloured by kind (confirmed filled, not confirmed hollow), the controls in grey; the
    dashed diagonal is measured = predicted."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colours = {"redundancy": "tab:blue", "synergy": "tab:red", "control": "0.6"}
    for kind, rows in checks.groupby(checks["kind"].where(~checks["control"], "control")):
        colour = colours.get(kind, "tab:green")
        for confirmed, part in rows.groupby("confirmed"):
            half = 1.96 * part["se"].to_numpy()
            ax.errorbar(part["predicted"], part["measured"], yerr=np.nan_to_num(half), fmt="o", ms=5, capsize=2,
                        color=colour, mfc=colour if confirmed else "white", lw=0.8,
                        label=f"{kind}, {'confirmed' if confirmed else 'not confirmed'} ({len(part)})")
    values = np.r_[checks["predicted"], checks["measured"]]
    values = values[np.isfinite(values)]
    edge = float(np.abs(values).max()) * 1.1 if len(values) else 1.0
    ax.plot([-edge, edge], [-edge, edge], "k--", lw=0.7)
    ax.axhline(0, color="black", lw=0.4)
    ax.axvline(0, color="black", lw=0.4)
    ax.set_xlabel("predicted interaction (fit, at the run's alpha)")
    ax.set_ylabel(f"measured double difference ({measured_on})")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_removals(checks: pd.DataFrame):
    """Margin drop against the number of players removed, per method: the mean over targets with
    its 95% t-interval (:func:`~datamodels.ablation.measure.removal_summary`)."""
    from .measure import t_summary

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for method, rows in checks.groupby("method"):
        stats = [(k, *t_summary(g["drop"].to_numpy())) for k, g in rows.groupby("k")]
        k, mean, _, lo, hi, _ = map(np.asarray, zip(*stats))
        ax.errorbar(k, mean, yerr=np.nan_to_num(np.stack([mean - lo, hi - mean])), marker="o", capsize=3,
                    label=method)
    ax.set_xlabel("players removed (k)")
    ax.set_ylabel("target margin drop (retrained)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ablation_png(checks: pd.DataFrame, design: str) -> bytes:
    """The figure of a check's design as PNG bytes: removal curves for ``removal``, else measured
    against predicted."""
    figure = plot_removals(checks) if design == "removal" else \
        plot_pairs(checks, "held-out models" if design == "heldout" else "retrained")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
