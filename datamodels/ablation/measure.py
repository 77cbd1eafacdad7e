"""What the retrained models say of each check, and whether it confirms the fit's claim.

Pairs: per background, the double difference ``f(S+i+j) - f(S+i) - f(S+j) + f(S)`` on the pair's
target; its mean over backgrounds, the standard error, a two-sided one-sample t-test of zero
(the backgrounds are independent; the four cells of one share a seed), and Benjamini-Hochberg
over every checked pair, controls included. A pair is **confirmed** when it passes at level
``fdr`` and its measured sign is the predicted one (for a control, whose prediction is usually
zero, passing at all counts: a false alarm). Removal: per background (or seed, from the whole
set), the target's margin with the set minus without it; its mean with a 95% t-interval, and the
**flip rate**: of the backgrounds where the model with the set gets the target right (margin >
0), the share where removing the set makes it wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .design import AblationError


def _model_roles(roles: pd.DataFrame, mask_id: np.ndarray, repeat: np.ndarray) -> pd.DataFrame:
    """One row per model: its role, with the background taken from the repeat where the role says -1."""
    rows = roles.iloc[mask_id].reset_index(drop=True)
    rows["background"] = np.where(rows["background"] < 0, repeat, rows["background"])
    return rows


def t_summary(values: np.ndarray) -> tuple[float, float, float, float, float]:
    """Mean, standard error, 95% t-interval and two-sided p-value of a sample (NaN below two values)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()) if len(values) else np.nan, np.nan, np.nan, np.nan, np.nan
    mean, se = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
    half = stats.t.ppf(0.975, len(values) - 1) * se
    p = 2 * stats.t.sf(abs(mean) / se, len(values) - 1) if se > 0 else float(mean == 0)
    return float(mean), float(se), float(mean - half), float(mean + half), float(p)


def confirm(checks: pd.DataFrame, fdr: float) -> pd.DataFrame:
    """``checks`` (with ``measured``, ``p``, ``predicted``) with ``passes`` (Benjamini-Hochberg at
    ``fdr`` over every row with a p-value) and ``confirmed``."""
    p = checks["p"].to_numpy(float)
    passes = np.zeros(len(p), dtype=bool)
    finite = np.isfinite(p)
    if finite.any():
        passes[finite] = stats.false_discovery_control(p[finite], method="bh") <= fdr
    sign_ok = (np.sign(checks["measured"]) == np.sign(checks["predicted"])) | (checks["predicted"] == 0)
    return checks.assign(passes=passes, confirmed=passes & sign_ok.to_numpy())


def measure_pairs(checks: pd.DataFrame, roles: pd.DataFrame, mask_id, repeat, margins: np.ndarray,
                  fdr: float) -> tuple[pd.DataFrame, np.ndarray]:
    """``checks`` with the measured double difference on its own target (``measured``, ``se``,
    ``lo``, ``hi``, ``p``, ``backgrounds``) and the confirmation; and the mean double difference of
    every check on every target (``[checks, T]``: each pair is also measured on the others).
    ``margins``: ``[models, T]`` of the child sweep, rows in the order of ``mask_id``."""
    models = _model_roles(roles, np.asarray(mask_id), np.asarray(repeat))
    sign = np.where(models["in_i"] == models["in_j"], 1.0, -1.0)  # + both, + neither, - one alone
    width = int(models["background"].max()) + 1
    key = models["pair"].to_numpy() * width + models["background"].to_numpy()
    dd = np.zeros((int(key.max()) + 1, margins.shape[1]))
    np.add.at(dd, key, margins * sign[:, None])
    complete = np.flatnonzero(np.bincount(key) == 4)
    rows, everywhere = [], np.full((len(checks), margins.shape[1]), np.nan)
    for c, (pair, target) in enumerate(zip(checks["pair"], checks["target"])):
        own = dd[complete[complete // width == pair]]
        if len(own):
            everywhere[c] = own.mean(0)
        rows.append((*t_summary(own[:, target]), len(own)))
    measured = pd.DataFrame(rows, columns=["measured", "se", "lo", "hi", "p", "backgrounds"])
    return confirm(pd.concat([checks.reset_index(drop=True), measured], axis=1), fdr), everywhere


def measure_removals(sets: pd.DataFrame, roles: pd.DataFrame, mask_id, repeat, margins: np.ndarray) -> pd.DataFrame:
    """``sets`` with the measured margin drop on the target (``drop``, ``se``, ``lo``, ``hi``), the
    ``flip_rate`` and the number of backgrounds (or seeds) it was measured on."""
    models = _model_roles(roles, np.asarray(mask_id), np.asarray(repeat))
    which, removed = models["set"].to_numpy(), models["removed"].to_numpy() == 1
    background = models["background"].to_numpy()
    rows = []
    for s, target in zip(sets["set"], sets["target"]):
        # background=full: the whole set (set -1) is every set's model with it
        keep = ((which == s) | (which < 0)) & ~removed
        kept = pd.Series(margins[keep, target], index=background[keep])
        without = pd.Series(margins[(which == s) & removed, target], index=background[(which == s) & removed])
        both = kept.index.intersection(without.index)
        with_set, without_set = kept.loc[both].to_numpy(), without.loc[both].to_numpy()
        right = with_set > 0
        flips = float(((without_set <= 0) & right).sum() / right.sum()) if right.any() else np.nan
        mean, se, lo, hi, _ = t_summary(with_set - without_set)
        rows.append((mean, se, lo, hi, flips, len(both)))
    measured = pd.DataFrame(rows, columns=["drop", "se", "lo", "hi", "flip_rate", "backgrounds"])
    return pd.concat([sets.reset_index(drop=True), measured], axis=1)


def heldout_pairs(checks: pd.DataFrame, masks_of, margins_of, fdr: float) -> pd.DataFrame:
    """``checks`` measured on models already trained (the fit's held-out models): per pair, the
    double difference of the four cells' mean margins, ``mean(11) - mean(10) - mean(01) + mean(00)``,
    and its standard error ``sqrt(sum of var/count)``; no training. ``masks_of(players)`` gives the
    held-out models' bool columns ``[m, len(players)]``, ``margins_of(target)`` their margins."""
    rows = []
    for target, group in checks.groupby("target", sort=False):
        y = np.asarray(margins_of(int(target)), float)
        players = np.unique(group[["i", "j"]].to_numpy())
        cols = masks_of(players)
        where = {int(p): c for c, p in enumerate(players)}
        for index, i, j in zip(group.index, group["i"], group["j"]):
            xi, xj = cols[:, where[int(i)]], cols[:, where[int(j)]]
            cells = [y[(xi == a) & (xj == b)] for a, b in ((1, 1), (1, 0), (0, 1), (0, 0))]
            if min(map(len, cells)) < 2:
                rows.append((index, np.nan, np.nan, np.nan, np.nan, np.nan, min(map(len, cells))))
                continue
            mean = cells[0].mean() - cells[1].mean() - cells[2].mean() + cells[3].mean()
            se = np.sqrt(sum(c.var(ddof=1) / len(c) for c in cells))
            p = 2 * stats.norm.sf(abs(mean) / se) if se > 0 else float(mean == 0)
            rows.append((index, mean, se, mean - 1.96 * se, mean + 1.96 * se, p, min(map(len, cells))))
    measured = pd.DataFrame(rows, columns=["row", "measured", "se", "lo", "hi", "p", "smallest_cell"]).set_index("row")
    return confirm(checks.join(measured), fdr)


def pair_summary(checks: pd.DataFrame) -> pd.DataFrame:
    """One row per group of checked pairs (the fit's pairs by stratum of rank, all of them, the
    controls): how many, the share confirmed with a 95% interval (Wilson's; for ``all`` the
    stratified estimate weighting each stratum by its size), how many were measured with the
    predicted sign, and the slope of measured on predicted over every check with its 95% interval.

    ``real_at_least``: a pair that is not there is measured with either sign at random, so if a
    share ``q`` of a group is real, the share measured with the predicted sign is at most
    ``q + (1 - q) / 2``: ``2 * share - 1`` bounds ``q`` from below, whatever the power (with the
    bounds of the share's 95% interval carried through). Controls (no predicted sign) have none.
    """
    rows = []
    fitted, controls = checks[~checks["control"]], checks[checks["control"]]
    right = np.sign(checks["measured"]) == np.sign(checks["predicted"])

    def shares(frame, weights=None):
        k, m = int(frame["confirmed"].sum()), len(frame)
        signs = int(right[frame.index].sum())
        if weights is None:
            rate, (lo, hi) = (k / m if m else np.nan), _wilson(k, m)
            sign_rate, (sign_lo, sign_hi) = (signs / m if m else np.nan), _wilson(signs, m)
        else:
            (rate, lo, hi), (sign_rate, sign_lo, sign_hi) = (_stratified(frame["confirmed"], frame, weights),
                                                             _stratified(right[frame.index], frame, weights))
        real = [max(0.0, 2 * v - 1) for v in (sign_rate, sign_lo, sign_hi)]
        return k, rate, lo, hi, signs, *real

    for stratum, group in fitted.groupby("stratum"):
        rank_lo, rank_hi = int(group["rank"].min()), int(group["rank"].max())
        label = f"ranks {rank_lo}-{rank_hi}" if fitted["stratum"].nunique() > 1 else "fitted pairs"
        rows.append((label, len(group), *shares(group)))
    if fitted["stratum"].nunique() > 1:
        weights = fitted.groupby("stratum")["stratum_size"].first()
        rows.append(("all fitted pairs (stratified)", len(fitted), *shares(fitted, weights)))
    if len(controls):
        rows.append(("controls", len(controls), *shares(controls)[:4], np.nan, np.nan, np.nan, np.nan))
    summary = pd.DataFrame(rows, columns=["group", "pairs", "confirmed", "rate", "lo", "hi", "right_sign",
                                          "real_at_least", "real_lo", "real_hi"])
    slope = measured_slope(checks)
    summary = summary.assign(slope=slope[0], slope_lo=slope[1], slope_hi=slope[2])
    if "exact" in checks:  # an exhaustive run: the share of checks within two standard errors of the truth
        return summary.assign(exact_agreement=float(exact_agreement(checks).mean()))
    return summary


def _stratified(values: pd.Series, frame: pd.DataFrame, weights: pd.Series) -> tuple[float, float, float]:
    """A share over strata weighted by their sizes, with its normal 95% interval."""
    rates = values.groupby(frame["stratum"]).mean()
    counts = values.groupby(frame["stratum"]).size()
    w = weights / weights.sum()
    estimate = float((w * rates).sum())
    se = float(np.sqrt((w ** 2 * rates * (1 - rates) / counts.clip(lower=1)).sum()))
    return estimate, max(0.0, estimate - 1.96 * se), min(1.0, estimate + 1.96 * se)


def exact_agreement(checks: pd.DataFrame) -> pd.Series:
    """Per check: whether the measured value lies within two standard errors (the measurement's
    and the exact value's, combined) of the exhaustive sweep's exact double difference."""
    return (checks["measured"] - checks["exact"]).abs() <= 2 * np.sqrt(checks["se"] ** 2 + checks["exact_se"] ** 2)


def measured_slope(checks: pd.DataFrame) -> tuple[float, float, float]:
    """Least-squares slope of measured on predicted over the checks, with its 95% interval."""
    ok = np.isfinite(checks["measured"]) & np.isfinite(checks["predicted"])
    x, y = checks.loc[ok, "predicted"].to_numpy(float), checks.loc[ok, "measured"].to_numpy(float)
    if len(x) < 3 or np.ptp(x) == 0:
        return np.nan, np.nan, np.nan
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _wilson(k: int, m: int) -> tuple[float, float]:
    if m == 0:
        return np.nan, np.nan
    z, p = 1.96, k / m
    centre = (p + z * z / (2 * m)) / (1 + z * z / m)
    half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def removal_comparison(measured: pd.DataFrame, against: str = "linear") -> pd.DataFrame:
    """Per ``k`` and method: its drop minus ``against``'s on the same targets, paired over targets,
    with a 95% t-interval."""
    if against not in set(measured["method"]):
        raise AblationError(f"the removal sets hold no method {against!r} to compare with "
                            f"(methods: {sorted(measured['method'].unique())})")
    wide = measured.pivot_table(index=["target", "k"], columns="method", values="drop")
    rows = []
    for (k, method), _ in measured.groupby(["k", "method"]):
        if method == against:
            continue
        diff = (wide[method] - wide[against]).xs(k, level="k").dropna().to_numpy()
        mean, se, lo, hi, p = t_summary(diff)
        rows.append((k, method, against, len(diff), mean, lo, hi, p))
    return pd.DataFrame(rows, columns=["k", "method", "against", "targets", "difference", "lo", "hi", "p"])


def removal_agreement(measured: pd.DataFrame, predicted: str) -> float:
    """Spearman correlation of the predicted (column ``predicted``) and measured drops over all sets."""
    ok = measured[predicted].notna() & measured["drop"].notna()
    return float(stats.spearmanr(measured.loc[ok, predicted], measured.loc[ok, "drop"]).statistic)


def removal_summary(checks: pd.DataFrame, fit_engine: str) -> pd.DataFrame:
    """Per method and ``k``: the mean drop over targets (95% t-interval), the mean flip rate, the
    mean predicted drop, and the Spearman correlation of predicted and measured drops over all sets."""
    predicted = f"predicted_{fit_engine}"
    rows = []
    for (method, k), group in checks.groupby(["method", "k"]):
        mean, _, lo, hi, _ = t_summary(group["drop"].to_numpy())
        rows.append((method, k, len(group), mean, lo, hi, group["flip_rate"].mean(), group[predicted].mean()))
    summary = pd.DataFrame(rows, columns=["method", "k", "targets", "drop", "lo", "hi", "flip_rate", "predicted"])
    return summary.assign(spearman_predicted_measured=removal_agreement(checks, predicted))
