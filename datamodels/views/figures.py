"""The views' matplotlib figures: a target and its margins, its strongest interactions (images
where the run has them, bars of Möbius coefficients where not), a player's examples, candidate
duplicate groups, and the fits' held-out R^2.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..renamed import renamed_keyword
from .run_view import RunView
from .terms import target_summary, top_effects


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


@renamed_keyword("method", "engine")
def plot_interactions(view: RunView, target: int, kind: str, k: int = 4, engine: str = "proxyspex"):
    """The ``k`` strongest interactions of one kind of one target. With images: rows of images, the
    target then the members (the first example of a player that is a group), titled with class and
    Möbius. Without: one bar per term, its Möbius coefficient, labelled with the players' names."""
    rows = top_effects(view, target, kind=kind, k=k, engine=engine)
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
    """Held-out R^2 of every fitted target: one histogram per engine (as many targets as there are,
    one figure of fixed size)."""
    metrics = view.fit_metrics
    fig, ax = plt.subplots(figsize=(5.5, 3))
    low = min(0.0, float(np.nanmin(metrics["r2"]))) if len(metrics) else 0.0
    bins = np.linspace(max(low, -1.0), 1.0, 41)  # R^2 below -1 goes into the first bin
    for engine, rows in metrics.groupby("engine"):
        ax.hist(np.clip(rows["r2"], bins[0], 1.0), bins=bins, histtype="step", lw=1.5,
                label=f"{engine} ({len(rows):,} targets)")
    ax.set_xlabel("held-out R^2 per target")
    ax.set_ylabel("targets")
    ax.axvline(0, color="black", lw=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
