"""Twin players: known near-duplicates planted in a real training set (``players.twins``).

The duplicates experiment (``conf/experiment/duplicates.yaml``, issue 19) asks whether the
fit's redundant pairs find duplicated training data. Its ground truth is made here: after the
players are formed (e.g. the demo's 100 k-means clusters), ``count`` of them, drawn with
``seed``, each get a **twin**: a new player made of a lightly perturbed copy of every one of its
images, with the same labels. The sweep then has ``n + count`` players, of which ``count`` known
pairs (original, twin) are near-duplicates; the run records them in ``RunFolder.twins``
(``twins.csv``, columns ``player_a`` (original), ``player_b`` (twin)).

The perturbation, per copied image (so no twin is a byte-identical copy, as ciFAIR's near
duplicates of CIFAR are not): a shift by one pixel in one of the four directions, drawn
uniformly, the uncovered edge filled with 0 (the digits' background), then Gaussian noise of sd
``noise`` (on the 0..255 scale), rounded and clipped to uint8 (``shift: false``: the noise
only, for near-exact copies; on 8x8 digits a one-pixel shift moves 1/8 of the image). The copies are appended to the
dataset's images (after every original, so the target and holdout splits keep their indices)
and to the train split, so the dataset's fingerprint covers them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..errors import UserError
from .data import PreparedData, fingerprint

# The four one-pixel shifts (rows, columns).
SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def shift_image(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` (``[H, W, C]``) moved by ``dy`` rows and ``dx`` columns, the uncovered edge 0."""
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


def perturb(images: np.ndarray, rng: np.random.Generator, noise: float,
            shift: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The copies of uint8 ``images`` ``[k, H, W, C]`` (module docstring), and each one's shift
    (an index into :data:`SHIFTS`; drawn, and not applied, when ``shift`` is false)."""
    shifts = rng.integers(0, len(SHIFTS), len(images))
    moved = np.stack([shift_image(image, *SHIFTS[s]) if shift else image
                      for image, s in zip(images, shifts)]).astype(np.float64)
    noisy = moved + rng.normal(0.0, noise, moved.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8), shifts


def add_twins(data: PreparedData, groups: np.ndarray, count: int, seed: int = 0, noise: float = 8.0,
              shift: bool = True) -> tuple[PreparedData, np.ndarray, pd.DataFrame]:
    """``data`` and ``groups`` (each training example's player) with ``count`` twin players added,
    and the pairs (``player_a`` original, ``player_b`` its twin, by increasing original)."""
    n = int(groups.max()) + 1
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= n:
        raise UserError(f"players.twins.count={count!r} must be an integer in 1..{n} (the players to twin)")
    if not noise >= 0:
        raise UserError(f"players.twins.noise={noise!r} must be a non-negative pixel sd (0..255 scale)")
    rng = np.random.default_rng([seed, 0x7715])
    originals = np.sort(rng.choice(n, count, replace=False))
    dataset, train = data.dataset, data.splits["train"]
    copies, copy_groups, sources = [], [], []
    for j, player in enumerate(originals):
        members = np.flatnonzero(groups == player)  # positions in the train split
        images, _ = perturb(data.images("train")[members], rng, noise, shift)
        copies.append(images)
        copy_groups.append(np.full(len(members), n + j, dtype=np.int64))
        sources.append(train[members])
    sources = np.concatenate(sources)
    new = np.arange(len(dataset.labels), len(dataset.labels) + len(sources))
    is_test = None if dataset.is_test is None else np.concatenate([dataset.is_test, np.zeros(len(new), bool)])
    twinned = replace(dataset, images=np.concatenate([dataset.images, *copies]),
                      labels=np.concatenate([dataset.labels, dataset.labels[sources]]), is_test=is_test)
    splits = dict(data.splits) | {"train": np.concatenate([train, new])}
    pairs = pd.DataFrame({"player_a": originals.astype(np.int64), "player_b": n + np.arange(count, dtype=np.int64)})
    return (PreparedData(twinned, splits, fingerprint(twinned, splits)), np.concatenate([groups, *copy_groups]),
            pairs)


def twin_outcomes(keep: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per keep-set (rows of ``prune/keep_sets.parquet``: ``method``, ``fraction``, ``draw``,
    ``players``), how many of the known twin ``pairs`` it keeps both of, one of, and neither of.

    What a pruner should do with a duplicated concept is keep exactly one copy: neither is the
    concept lost, both is budget spent twice.
    """
    a, b = pairs["player_a"].to_numpy(), pairs["player_b"].to_numpy()
    rows = []
    for method, fraction, draw, players in keep[["method", "fraction", "draw", "players"]].itertuples(index=False):
        kept = np.isin(a, players).astype(int) + np.isin(b, players)
        rows.append({"method": method, "fraction": fraction, "draw": draw, "both_kept": int((kept == 2).sum()),
                     "one_kept": int((kept == 1).sum()), "both_removed": int((kept == 0).sum())})
    return pd.DataFrame(rows)
