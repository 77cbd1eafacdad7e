"""How faithful a fit is on models it did not see, and the scale its terms are judged in.

:func:`r2` and :func:`spearman` (the linear datamodeling score, LDS, of Ilyas et al. 2022 and
Park et al. 2023) judge a fit's predictions on held-out models; :func:`noise_ceiling` is what
no surrogate of the mask can beat when masks are repeated; :func:`residual_scale` is the sd a
fit leaves unexplained, the unit the report ranks terms in and pruning judges them in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def r2(y, pred) -> float:
    """Coefficient of determination of ``pred`` against observed ``y``."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    return float(1.0 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def spearman(y, pred) -> float:
    """Spearman rank correlation: the linear datamodeling score (LDS) of Ilyas et al. / TRAK.

    A constant prediction (e.g. an L1 fit that kept no feature) ranks nothing: its score is 0,
    not NaN, so that medians over targets count it instead of skipping it.
    """
    ranks = pd.DataFrame({"y": y, "pred": pred}).rank()
    if ranks["pred"].nunique() == 1:
        return 0.0
    return float(np.corrcoef(ranks["y"], ranks["pred"])[0, 1])


def noise_ceiling(y, mask_id) -> float:
    """R^2 that the true per-mask mean achieves against single repeats; NaN without repeats.

    ``1 - (pooled within-mask variance) / (variance of y)``: the within-mask variance is the
    seed noise no surrogate of the mask can explain. Estimating it from the spread of repeats
    (ddof 1 per mask) is unbiased, unlike scoring the mean of repeats against a repeat it
    contains (too optimistic) or against the others' mean (too pessimistic with few repeats).
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=float), "g": np.asarray(mask_id)})
    groups = frame.groupby("g")["y"]
    dof = groups.count() - 1
    if dof.sum() == 0:
        return float("nan")
    within = (groups.var(ddof=1).fillna(0.0) * dof).sum() / dof.sum()
    return float(1.0 - within / frame["y"].var(ddof=1))


def residual_scale(r2, margin_sd=None, margin_var=None):
    """Per target: the sd of what its fit leaves unexplained, ``sqrt(1 - R^2) sd`` with the
    held-out ``r2`` (floored at 5% of the variance, so no target counts as noiseless) and the
    margin's sd over the models, or its variance ``margin_var``: the unit the report and
    :func:`summary` rank terms in, and pruning judges a target's terms in.

    The two spellings differ in the last bit; each is kept for the callers that have always
    used it (the views pass the sd, pruning's surrogate the variance), so that their rankings
    and keep-sets stay those of the runs already made."""
    unexplained = np.clip(1.0 - np.asarray(r2, float), 0.05, 1.0)
    if margin_var is not None:
        return np.sqrt(unexplained * np.asarray(margin_var, float)) + 1e-12
    return np.sqrt(unexplained) * np.asarray(margin_sd, float) + 1e-12
