"""Sparse interaction surrogates of retraining games: the engines and what they share.

A retraining game maps a mask ``x in {0,1}^n`` (1 = player kept in the training set) to one
target's margin. Engines fit it from ``(masks, margins)``; one module per concept:

- :mod:`.engine`: the public base :class:`Engine` every engine subclasses, its fit-stage hooks
  and the registry of ``fit=<name>`` (:func:`make_engine`);
- :mod:`.spectra`: Fourier/Möbius transforms, interaction indices, the exact spectrum of a
  LightGBM ensemble, and the synergy/redundancy rule (:func:`interaction_table`);
- :mod:`.lasso`: L1 regression from one Gram matrix per target (:class:`GramLasso`);
- :mod:`.screening`: the working set of players per target and the KKT check over all of them;
- :mod:`.screened`: the base of the engines fitted on a working set by an L1 path;
- :mod:`.linear`: the linear datamodel of Ilyas et al. (2022), ``fit=linear``;
- :mod:`.proxyspex`: ProxySPEX (Butler et al., 2025), ``fit=proxyspex``;
- :mod:`.selection`: ProxySPEX's tests of the proposed interactions (:class:`.Selection`), on
  :mod:`.term_scores` (centred term features and their scores), :mod:`.term_tests` (critical
  values, false discovery control, the design effect) and :mod:`.term_keys` (sets of terms
  as key rows);
- :mod:`.spex`: SPEX (Kang et al., 2025), on the masks of its own design, ``fit=spex``;
- :mod:`.batched_lasso`: the linear datamodel of many targets at once on a GPU, ``fit=linear_gpu``;
- :mod:`.targets`: many targets in blocks and worker processes;
- :mod:`.shapiq_export`: fitted spectra as shapiq's ``InteractionValues``.
"""

from .batched_lasso import BatchedLinearDatamodel
from .engine import ENGINES, MIN_MODELS, Engine, check_margins, heldout_split, make_engine
from .lasso import GramLasso
from .linear import LinearDatamodel
from .proxyspex import ProxySPEX
from .screened import ScreenedEngine
from .screening import DEFAULT_SCREEN_K, null_gradients, resolve_screen_k, screen
from .shapiq_export import from_interaction_values, to_interaction_values
from .spectra import (
    banzhaf_interaction_index,
    banzhaf_values,
    booster_fourier,
    fourier_to_mobius,
    interaction_table,
    mobius_predict,
    mobius_to_fourier,
    shapley_interaction_index,
    shapley_values,
)
from .spex import SPEX, spex_design, spex_plan
from .targets import TargetFit, fit_targets, iter_fit_targets

__all__ = [
    "BatchedLinearDatamodel", "DEFAULT_SCREEN_K", "ENGINES", "Engine", "GramLasso", "LinearDatamodel", "MIN_MODELS",
    "ProxySPEX", "SPEX", "ScreenedEngine", "TargetFit", "banzhaf_interaction_index", "banzhaf_values",
    "booster_fourier", "check_margins", "fit_targets", "fourier_to_mobius", "from_interaction_values", "heldout_split",
    "interaction_table", "iter_fit_targets", "make_engine", "mobius_predict", "mobius_to_fourier", "null_gradients",
    "resolve_screen_k", "screen", "shapley_interaction_index", "shapley_values", "spex_design", "spex_plan",
    "to_interaction_values",
]
