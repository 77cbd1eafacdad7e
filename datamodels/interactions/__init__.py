"""Sparse interaction surrogates of retraining games: ProxySPEX and the linear datamodel.

A retraining game maps a mask ``x in {0,1}^n`` (1 = player kept in the training set) to one
target's margin. Its surrogates are fitted here from ``(masks, margins)``; one module per
concept:

- :mod:`.spectra`: Fourier/Möbius transforms, interaction indices, the exact spectrum of a
  LightGBM ensemble, and the synergy/redundancy rule (:func:`interaction_table`);
- :mod:`.lasso`: L1 regression from one Gram matrix per target (:class:`GramLasso`);
- :mod:`.linear`: the linear datamodel of Ilyas et al. (2022);
- :mod:`.proxyspex`: ProxySPEX (Butler et al., 2025);
- :mod:`.spex`: SPEX (Kang et al., 2025), on the masks of its own design;
- :mod:`.shapiq_export`: fitted spectra as shapiq's ``InteractionValues``;
- :mod:`.screening`: the working set of players per target and the KKT check over all of them;
- :mod:`.targets`: many targets in blocks and worker processes.
"""

from .lasso import GramLasso
from .linear import LinearDatamodel
from .proxyspex import ProxySPEX
from .shapiq_export import from_interaction_values, to_interaction_values
from .spex import SPEX, spex_design, spex_plan
from .screening import DEFAULT_SCREEN_K, null_gradients, resolve_screen_k, screen
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
from .surrogate import MIN_MODELS
from .targets import METHODS, TargetFit, fit_targets, iter_fit_targets, make_estimator

__all__ = [
    "DEFAULT_SCREEN_K", "GramLasso", "LinearDatamodel", "METHODS", "MIN_MODELS", "ProxySPEX", "SPEX", "TargetFit",
    "banzhaf_interaction_index", "banzhaf_values", "booster_fourier", "fit_targets", "fourier_to_mobius",
    "interaction_table", "iter_fit_targets", "make_estimator", "mobius_predict", "null_gradients",
    "mobius_to_fourier", "resolve_screen_k", "screen", "shapley_interaction_index", "shapley_values",
    "from_interaction_values", "spex_design", "spex_plan", "to_interaction_values",
]
