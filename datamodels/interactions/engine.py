"""The shape every interaction engine shares, and the registry that maps ``fit=<name>`` to one.

An **engine** fits a sparse Möbius spectrum to one target's margins from the masks of the
models that saw it: ``Engine.fit(X, y)`` with ``X`` bool/0-1 ``[m, n]`` (or
:class:`~datamodels.packed.PackedMasks`) and ``y [m]``, then ``mobius_`` (dict of player
tuples to coefficients), ``fourier_``, ``predict`` and ``top_interactions``. Engines are
scikit-learn estimators: parameters are set in ``__init__`` and nothing else happens there,
``fit`` returns ``self``, fitted state ends in ``_`` (so ``clone``, ``get_params`` and
``set_params`` work; tests/test_engines.py runs scikit-learn's checks that apply to masks).

The fit stage (:mod:`datamodels.fit.stage`) drives every engine through the same hooks, each with
a default that an engine overrides where it differs; it never asks an engine what type it is:

- :meth:`Engine._check_params`: every parameter in its domain, checked first by every entry
  point that fits (``fit``, ``fit_block``, ``fit_targets``, ``heldout_models``), as
  scikit-learn's ``fit`` does, so that a bad parameter fails before any work (default: none);
- :meth:`Engine.heldout_models`: which models judge the fit (default: a seeded share of the mask
  ids; SPEX: every model outside its design);
- :meth:`Engine.fit_targets`: how many targets are fitted (default: one clone per target, in
  blocks of :meth:`Engine.block_size` over worker processes, :mod:`.targets`; the batched GPU
  linear datamodel: whole batches at once on the device);
- :meth:`Engine.fit_block`: how one block of targets is fitted inside a worker (default: each
  target on its own; the screened engines share passes over the masks, :mod:`.screening`);
- :meth:`Engine.params_from_run`: settings the run's recorded design fixes (SPEX: its budget,
  seed and degree);
- :meth:`Engine.at_budget`: which subsets of an exhaustive game it is fitted on at a budget
  (default: the random sample offered; SPEX: its own design), for :mod:`datamodels.fit.exhaustive`.

A new engine is a subclass with a ``name``: ``class MyEngine(Engine, name="mine")`` registers it
as ``fit=mine`` (docs/interactions.md, "Adding an engine", has a complete example).
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone

from ..errors import UserError
from ..packed import PackedMasks, as_packed
from .spectra import _to_arrays, interaction_table, mobius_eval, mobius_to_fourier
from .targets import TargetFit, iter_fit_targets

# Fewer models than this leave nothing to split for validation and cross-validation.
MIN_MODELS = 20

ENGINES: dict[str, type[Engine]] = {}


def make_engine(name: str, **params) -> Engine:
    """The engine registered as ``fit=<name>``, with ``params`` (``fit.params``)."""
    if name not in ENGINES:
        raise UserError(f"unknown fit engine {name!r}; choose one of {', '.join(sorted(ENGINES))} (fit=NAME)")
    try:
        return ENGINES[name](**params)
    except TypeError as err:  # a misspelt fit.params key
        raise UserError(f"fit.params of fit={name}: {err}") from err


def check_margins(y, models: int, engine: str, min_models: int = MIN_MODELS) -> np.ndarray:
    """``y`` as float ``[models]``, or a ValueError that says what is wrong with it."""
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"{engine}.fit: y must be 1-D [models]; got shape {y.shape}")
    if y.shape[0] != models:
        raise ValueError(f"{engine}.fit: X has {models} models (rows) but y has {y.shape[0]} values")
    if not np.isfinite(y).all():
        i = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{engine}.fit: y must be finite; y[{i}] = {y[i]}")
    if models < min_models:
        raise ValueError(f"{engine}.fit needs at least {min_models} models for its validation split and "
                         f"cross-validation; got {models}")
    if np.ptp(y) == 0:
        raise ValueError(f"{engine}.fit: y is constant ({y[0]}); there is nothing to attribute")
    return y


def is_integer(value) -> bool:
    """An int, numpy's included, and not a bool (``True`` is an int to Python, never a count here)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A finite number, not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and bool(np.isfinite(value))


def as_items(value) -> list | None:
    """The items of a list-like parameter (a list, tuple, array or a config's list), else None:
    a string is one value, not a list of characters."""
    if isinstance(value, (str, bytes)):
        return None
    try:
        return list(value)
    except TypeError:
        return None


def require(owner: str, name: str, value, ok: bool, must: str) -> None:
    """A :class:`UserError` ``"<owner>: <name> must <must>; got <value>"`` unless ``ok``."""
    if not ok:
        raise UserError(f"{owner}: {name} must {must}; got {value!r}")


def heldout_split(mask_id, fraction: float, seed: int) -> np.ndarray:
    """Bool [m]: models held out of fitting, chosen per mask id so repeats stay together.

    A seeded hash of each mask id (splitmix64) rather than a permutation of the ids present,
    so a model's side does not change when the sweep grows.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"fit.heldout_fraction must be in (0, 1); got {fraction}")
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the hash
        z = np.asarray(mask_id).astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(float) / 2.0**53 < fraction


class Engine(RegressorMixin, BaseEstimator):
    """Public base of the interaction engines: a fitted sparse Möbius spectrum, and the fit
    stage's hooks (module docstring).

    Fitted state every engine sets: ``mobius_``, ``fourier_``, ``n_players_``, ``players_``
    (the working set it looked at), ``kkt_added_`` (players a KKT check added to it),
    ``penalty_at_floor_`` (its L1 penalty wanted to go below what the working set stands for)
    and ``tested_`` (the terms, as member tuples, that passed a statistical test);
    :meth:`_set_spectrum` sets the last four to "all players, none added, no, none" for engines
    without a working set or tests. ``shrunk_mobius_``: the coefficients a decision should
    optimise (pruning's greedy), shrunk against the optimiser's curse; the same dict as
    ``mobius_`` except where an engine reports some terms unshrunk (ProxySPEX's relaxed refit).
    """

    name: ClassVar[str | None] = None
    # The fewest models it fits on: its L1 penalty is cross-validated and its trees early-stopped.
    min_models: ClassVar[int] = MIN_MODELS
    # Whether its interactions carry a test's guarantee: one it did not mark tested is a predictor only.
    tests_interactions: ClassVar[bool] = False

    def __init_subclass__(cls, name: str | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in ENGINES and ENGINES[name].__qualname__ != cls.__qualname__:
                raise ValueError(f"fit={name} is already registered for {ENGINES[name].__qualname__}")
            cls.name = name
            ENGINES[name] = cls

    # ---------------------------------------------------------------- the fitted spectrum

    def _set_spectrum(self, mobius: dict, n: int) -> None:
        """Record a fitted spectrum (the constant term under ``()``)."""
        mobius = dict(mobius)
        mobius.setdefault((), 0.0)
        self.n_players_ = n
        self.mobius_ = self.shrunk_mobius_ = mobius
        self.fourier_ = mobius_to_fourier(mobius)
        self._keys, self._vals = _to_arrays(mobius)
        self.__dict__.setdefault("players_", np.arange(n))
        self.__dict__.setdefault("kkt_added_", 0)
        self.__dict__.setdefault("penalty_at_floor_", False)
        self.__dict__.setdefault("tested_", frozenset())

    def predict(self, X) -> np.ndarray:
        """Predicted margins of masks ``X`` (bool, 0/1 ``[m, n]`` or :class:`PackedMasks`)."""
        X = as_packed(X)
        if X.n != self.n_players_:
            raise ValueError(f"X has {X.n} players but the model was fitted on {self.n_players_}")
        return mobius_eval(X, self._keys, self._vals)

    def top_interactions(self, k: int = 20, order: int | None = None) -> pd.DataFrame:
        """The ``k`` largest Möbius terms by magnitude (all orders >= 1, or only ``order``)."""
        table = interaction_table(self.mobius_, order=order, tested=self.tested_, shrunk=self.shrunk_mobius_)
        return table.head(k).reset_index(drop=True)

    # ---------------------------------------------------------------- the fit stage's hooks

    def _check_params(self) -> None:
        """Refuse any parameter outside its domain, with a :class:`UserError` that names it.

        Called first by every entry point that fits: parameters may change after ``__init__``
        (``set_params``, ``clone``), so they are checked where scikit-learn checks them, at the
        start of a fit, and never halfway through one. Default: nothing to check.
        """

    def _require(self, name: str, ok: bool, must: str) -> None:
        """``"<Engine>: <name> must <must>; got <value>"`` unless ``ok``."""
        require(type(self).__name__, name, getattr(self, name), ok, must)

    @classmethod
    def params_from_run(cls, run: dict, params: dict) -> dict:
        """``fit.params`` completed from the run's identity (``run.json``); default: unchanged."""
        return params

    def heldout_models(self, X: PackedMasks, mask_id: np.ndarray, fraction: float, seed: int) -> np.ndarray:
        """Bool ``[m]``: the models that judge the fit; default: ``fraction`` of the mask ids."""
        self._check_params()  # the fit stage's first call: a bad parameter fails before the split
        return heldout_split(mask_id, fraction, seed)

    def block_size(self, n: int) -> int:
        """Targets that one worker fits together (they share passes over the masks); default 1."""
        return 1

    def fit_block(self, X: PackedMasks, Y: np.ndarray, block: list[int]) -> list[TargetFit]:
        """Fit a clone of this engine to each column of ``Y [m, len(block)]``; default: one by one."""
        self._check_params()
        fits = []
        for target, y in zip(block, Y.T):
            start = time.perf_counter()
            try:
                fitted = clone(self).fit(X, y)
            except ValueError as err:
                raise ValueError(f"target {target}: {err}") from err
            fits.append(TargetFit(target, fitted, time.perf_counter() - start))
        return fits

    def fit_targets(self, X, Y, targets=None, rows=None, groups=None, workers: int = 1, progress: bool = True):
        """Yield a :class:`TargetFit` per chosen column of ``Y [M, T]``, fitted on ``rows``
        (default all) of the masks ``X``; ``groups`` are those rows' mask ids. Default: blocks
        of targets over ``workers`` processes (:func:`.targets.iter_fit_targets`)."""
        self._check_params()  # here, not in the lazy generator: before any worker is spawned
        return iter_fit_targets(self, X, Y, targets, rows, workers, progress=progress)

    def at_budget(self, n: int, budget: int, sampled: np.ndarray) -> tuple[Engine, np.ndarray]:
        """An unfitted copy for a budget of ``budget`` subsets of an exhaustive game on ``n``
        players, and the subsets (mask ids) it is fitted on; default: the random ``sampled``."""
        return clone(self), sampled

