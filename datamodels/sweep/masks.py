"""Players and mask designs.

A **player** is what a mask switches on or off: one training example (the default) or a group
of them. A **mask** is a bool vector over the ``n`` players, ``True = kept``.

Model ``i`` of a sweep with ``repeats = r`` trains on mask ``i // r`` (its *mask id*) with a
training seed of its own; both are pure functions of ``(sweep seed, i)``, so any worker on any
machine re-creates them without coordination and a re-run reproduces them exactly. A file
design may pair masks instead (:meth:`MaskDesign.seed_index`): masks of one **seed group** train
with the same seeds, so that their difference cancels most of the seed's noise (the 2x2
factorials of :mod:`datamodels.ablation`).

``alpha`` is one fraction kept, or a **grid** of them: then each mask first draws its own alpha
from the grid (uniformly, a pure function of ``(sweep seed, mask id)``, so every model's alpha is
known from its mask id: :meth:`MaskDesign.alpha_of`), and a fit can use only the masks of one
alpha. The datamodels paper fits the surrogate at the alpha it predicts (Ilyas et al. 2022);
one sweep over a grid gives a surrogate for every kept fraction a pruning study asks about.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

DESIGNS = ("bernoulli", "fixed_size", "exhaustive", "file", "spex", "imported")
GROUPINGS = ("example", "class", "cluster", "file")
MAX_EXHAUSTIVE_PLAYERS = 20

# Separate stream tags keep the mask stream and the training-seed stream independent.
_MASK_STREAM, _SEED_STREAM, _ALPHA_STREAM = 0, 1, 2


class MaskError(UserError):
    """A mask design or player grouping is invalid."""


# --------------------------------------------------------------------------- players


def group_players(kind: str, labels: np.ndarray, images: np.ndarray | None = None,
                  num_groups: int | None = None, path: str | os.PathLike | None = None,
                  seed: int = 0) -> np.ndarray:
    """Group id (0..n_players-1) of every training example.

    ``example``: every example is its own player. ``class``: one player per label.
    ``cluster``: k-means on pixels (deterministic given ``seed``). ``file``: ids from a ``.npy``
    file of one integer per training example.
    """
    m = len(labels)
    if kind == "example":
        return np.arange(m, dtype=np.int64)
    if kind == "class":
        return np.unique(labels, return_inverse=True)[1].astype(np.int64)
    if kind == "cluster":
        if not num_groups or not 1 <= num_groups <= m:
            raise MaskError(f"players=cluster needs 1 <= players.num_groups <= {m}, got {num_groups}")
        from sklearn.cluster import KMeans

        features = images.reshape(m, -1).astype(np.float32) / 255.0
        ids = KMeans(num_groups, n_init=3, random_state=seed).fit_predict(features)
        return _compact(ids)
    if kind == "file":
        if path is None or not Path(path).is_file():
            raise MaskError(f"players=file: players.path={path!r} does not exist")
        ids = np.load(path, allow_pickle=False)
        if ids.shape != (m,) or not np.issubdtype(ids.dtype, np.integer) or ids.min() < 0:
            raise MaskError(f"players=file: {path} must hold {m} non-negative integers (one per training "
                            f"example), found dtype {ids.dtype} and shape {ids.shape}")
        return _compact(ids)
    raise MaskError(f"unknown player grouping {kind!r}; choose one of {', '.join(GROUPINGS)} (players=NAME)")


def _compact(ids: np.ndarray) -> np.ndarray:
    """Renumber group ids to 0..k-1 so that no player is empty."""
    return np.unique(ids, return_inverse=True)[1].astype(np.int64)


def kept_examples(mask: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Indices (into the train split) of the examples whose player the mask keeps."""
    return np.flatnonzero(mask[groups])


def player_classes(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class of every player: the most common label among its examples."""
    counts = np.zeros((int(groups.max()) + 1, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (groups, labels), 1)
    return counts.argmax(1)


# --------------------------------------------------------------------------- designs


@dataclass(frozen=True)
class MaskDesign:
    """How masks are drawn. ``mask(j)`` is a pure function of ``(seed, j)``."""

    kind: str
    n: int
    alpha: float | tuple[float, ...] = 0.5  # a tuple: each mask draws its alpha from this grid
    seed: int = 0
    masks_from_file: np.ndarray | None = None
    budget: int | None = None  # design=spex: most masks SPEX may ask for
    degree: int = 5  # design=spex: SPEX's degree parameter (errors its BCH code corrects)
    seed_groups: np.ndarray | None = None  # design=file: int [num_masks], masks trained with the same seeds

    def __post_init__(self):
        if self.kind not in DESIGNS:
            raise MaskError(f"unknown mask design {self.kind!r}; choose one of {', '.join(DESIGNS)} (sweep.design=NAME)")
        if self.n < 1:
            raise MaskError(f"a mask design needs at least one player, got n={self.n}")
        if self.kind in ("bernoulli", "fixed_size"):
            if not self.alphas or any(not 0.0 < a < 1.0 for a in self.alphas):
                raise MaskError(f"sweep.alpha must lie strictly between 0 and 1 (one value or a list), got {self.alpha}")
            if len(set(self.alphas)) != len(self.alphas):
                raise MaskError(f"sweep.alpha lists a value twice: {list(self.alpha)}")
        if self.kind == "exhaustive" and self.n > MAX_EXHAUSTIVE_PLAYERS:
            raise MaskError(f"sweep.design=exhaustive enumerates 2^n masks and is refused for n={self.n} > "
                            f"{MAX_EXHAUSTIVE_PLAYERS}; group the players (players=class or cluster) or sample masks")

        if self.kind == "spex":
            spex_masks(self.n, self.budget, self.seed, self.degree)  # a budget below SPEX's smallest design fails here

    @property
    def num_masks(self) -> int | None:
        """How many distinct masks the design has; ``None`` when it draws without end."""
        if self.kind == "spex":
            return len(spex_masks(self.n, self.budget, self.seed, self.degree))
        if self.kind == "exhaustive":
            return 2 ** self.n
        if self.kind == "file":
            return len(self.masks_from_file)
        return None

    @property
    def alphas(self) -> tuple[float, ...]:
        """The grid the masks draw their alpha from (one value for a single-alpha design)."""
        return tuple(self.alpha) if isinstance(self.alpha, tuple) else (self.alpha,)

    def alpha_of(self, mask_ids) -> np.ndarray:
        """The alpha every mask id was drawn with (NaN for designs without one: exhaustive, file)."""
        mask_ids = np.asarray(mask_ids, dtype=np.int64)
        if self.kind not in ("bernoulli", "fixed_size"):
            return np.full(mask_ids.shape, np.nan)
        if len(self.alphas) == 1:
            return np.full(mask_ids.shape, self.alphas[0])
        grid = np.asarray(self.alphas)
        return np.array([grid[np.random.default_rng([self.seed, _ALPHA_STREAM, int(j)]).integers(len(grid))]
                         for j in mask_ids.ravel()]).reshape(mask_ids.shape)

    def seed_index(self, model_index: int, repeats: int) -> int:
        """What model ``model_index``'s training seed is drawn from: the index itself, or, for a
        file design with seed groups, ``group * repeats + repeat`` (every mask of a group shares
        its ``repeats`` seeds)."""
        if self.seed_groups is None:
            return model_index
        return int(self.seed_groups[model_index // repeats]) * repeats + model_index % repeats

    def mask(self, j: int) -> np.ndarray:
        if self.kind == "imported":  # datamodels.sweep.importing: the masks exist only in the run's shards
            raise MaskError("the masks of an imported run (sweep.design=imported) are read from its shards; "
                            "they cannot be drawn again")
        if self.num_masks is not None and not 0 <= j < self.num_masks:
            raise MaskError(f"mask id {j} is outside the {self.num_masks} masks of design={self.kind}")
        if self.kind == "exhaustive":
            return (j >> np.arange(self.n)) & 1 == 1  # bit p of j is player p
        if self.kind == "file":
            return self.masks_from_file[j].copy()
        if self.kind == "spex":
            return spex_masks(self.n, self.budget, self.seed, self.degree)[j].copy()
        alpha = float(self.alpha_of(j))
        rng = np.random.default_rng([self.seed, _MASK_STREAM, j])
        if self.kind == "bernoulli":
            return rng.random(self.n) < alpha
        kept = rng.choice(self.n, size=round(alpha * self.n), replace=False)
        mask = np.zeros(self.n, dtype=bool)
        mask[kept] = True
        return mask


def alpha_setting(value) -> float | tuple[float, ...]:
    """``sweep.alpha`` as :class:`MaskDesign` takes it: one float, or a tuple for a grid."""
    return tuple(float(a) for a in value) if isinstance(value, (list, tuple)) else float(value)


def design_of(meta: dict) -> MaskDesign:
    """The mask design recorded in a run's identity (``run.json`` or a shard's metadata)."""
    alpha = meta.get("alpha")
    return MaskDesign(meta["design"], int(meta["n"]), alpha_setting(0.5 if alpha is None else alpha),
                      int(meta.get("sweep_seed", 0)), budget=meta.get("budget"), degree=int(meta.get("degree") or 5))


def load_mask_file(path: str | os.PathLike, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Masks supplied by the user, and their seed groups when given: a ``.npy`` array
    ``[M, n]`` of 0/1 or bool, or a ``.npz`` with that array as ``masks`` and optionally
    ``seed_groups`` (int ``[M]``: masks with the same value train with the same seeds)."""
    if path is None or not Path(path).is_file():
        raise MaskError(f"sweep.design=file: sweep.mask_file={path!r} does not exist")
    groups = None
    if str(path).endswith(".npz"):
        with np.load(path, allow_pickle=False) as arrays:
            if "masks" not in arrays:
                raise MaskError(f"sweep.design=file: {path} holds no array 'masks' (found {sorted(arrays)})")
            masks = arrays["masks"]
            groups = arrays["seed_groups"] if "seed_groups" in arrays else None
    else:
        masks = np.load(path, allow_pickle=False)
    if masks.ndim != 2 or masks.shape[1] != n or len(masks) == 0:
        raise MaskError(f"sweep.design=file: {path} must hold an array [num_masks, {n}] (one column per player), "
                        f"found shape {masks.shape}")
    if masks.dtype != bool and not np.isin(masks, (0, 1)).all():
        bad = np.argwhere(~np.isin(masks, (0, 1)))[0]
        raise MaskError(f"sweep.design=file: {path} holds {masks[tuple(bad)].item()!r} at row {bad[0]}, column {bad[1]}; "
                        f"masks must be 0/1 (1 = kept)")
    if groups is not None and (groups.shape != (len(masks),) or not np.issubdtype(groups.dtype, np.integer)
                               or groups.min() < 0):
        raise MaskError(f"sweep.design=file: {path}'s seed_groups must be {len(masks)} non-negative integers "
                        f"(one per mask), found dtype {groups.dtype} and shape {groups.shape}")
    return masks.astype(bool), None if groups is None else groups.astype(np.int64)


def spex_masks(n: int, budget: int | None, seed: int, degree: int = 5) -> np.ndarray:
    """design=spex: the masks SPEX's sampling design asks for (Kang et al. 2025), then a quarter as
    many uniform random masks (each player kept with probability 1/2) that SPEX never reads, so
    that the fit stage can judge it on held-out masks. A pure function of ``(n, budget, seed,
    degree)``; see :mod:`datamodels.interactions.spex`."""
    from ..interactions.spex import spex_design

    if budget is None:
        raise MaskError("design=spex needs sweep.budget, the most masks SPEX may ask for")
    try:
        design = spex_design(n, int(budget), seed, degree)
    except ValueError as err:
        raise MaskError(f"design=spex: {err}") from err
    judge = np.random.default_rng([seed, _MASK_STREAM, len(design)]).random((-(-len(design) // 4), n)) < 0.5
    return np.concatenate([design, judge])


def training_seed(sweep_seed: int, model_index: int) -> int:
    """The training seed of model ``model_index``: a pure function of ``(sweep seed, index)``."""
    return int(np.random.default_rng([sweep_seed, _SEED_STREAM, model_index]).integers(2**31 - 1))
