"""Planning a retraining check (``ablate=pairs|removal|heldout``): its settings
(:class:`AblateSettings`), and :func:`plan_ablation`, which reads the run's fit and chooses the
checks (the fit's pairs, named pairs, known twins, or removal sets on chosen targets) and sizes
their design (:mod:`.design`) by the budget, before anything is trained. :mod:`.stage` runs the
plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..fit.outputs import untested_interactions
from ..fit.results import FitView, residual_sd
from ..settings import Settings, is_integer
from .design import (AblationError, Design, choose_pairs, control_pairs, fitted_pairs, pairs_design, removal_design,
                     removal_sets)
from .polynomial import TargetPolynomial

DESIGNS = ("pairs", "removal", "heldout")
BACKGROUNDS = ("alpha", "full")
_TARGET_STREAM = 14  # the random removal targets' stream, beside those of .design (10 to 13)


@dataclass
class AblateSettings(Settings):
    """``conf/ablate/<design>.yaml``; every setting is described there. Built from ``cfg.ablate``
    by :func:`datamodels.settings.from_section` (unknown keys refused, ``ablate.ks=4`` is ``[4]``)."""

    section = "ablate"
    error = AblationError
    design: str = "pairs"
    name: str | None = None
    fit_engine: str = "proxyspex"
    pairs: int | list | None = 20
    selection: str = "top"
    strata: int = 4
    controls: bool = True
    targets: int | list | str = 20
    methods: list = field(default_factory=lambda: ["interactions", "linear", "random"])
    ks: list = field(default_factory=lambda: [1, 2, 4, 8])
    background: str = "alpha"
    alpha: float | None = None
    backgrounds: int | None = None
    budget: int = 2560
    fdr: float = 0.1
    seed: int = 0
    models_per_shard: int = 40
    workers: int = 2
    shard: int | None = None

    def __post_init__(self):
        for name in ("methods", "ks"):
            if not isinstance(getattr(self, name), (list, tuple)):
                raise AblationError(f"ablate.{name}={getattr(self, name)!r} must be a list, e.g. ablate.{name}="
                                    f"[{getattr(self, name)}]")
        if self.design not in DESIGNS:
            raise AblationError(f"ablate.design={self.design!r}; choose one of {', '.join(DESIGNS)} (ablate=NAME)")
        if self.background not in BACKGROUNDS:
            raise AblationError(f"ablate.background={self.background!r}; choose one of {', '.join(BACKGROUNDS)}")
        self.check_integers(("strata", "budget", "models_per_shard", "workers", "backgrounds"), least=1)
        self.check_integers(("seed", "shard"), least=0)
        if not 0 < self.fdr < 1:
            raise AblationError(f"ablate.fdr={self.fdr} must lie in (0, 1)")
        if self.alpha is not None and not 0 < self.alpha < 1:
            raise AblationError(f"ablate.alpha={self.alpha} must lie in (0, 1)")
        if not self.ks or not all(is_integer(k, 1) for k in self.ks):
            raise AblationError(f"ablate.ks={self.ks!r} must be a list of positive integers")

    @property
    def folder_name(self) -> str:
        """The child folder under ``ablations/``: ``ablate.name``, else the design (and background)."""
        if self.name:
            return self.name
        return f"removal-{self.background}" if self.design == "removal" else self.design


@dataclass
class Plan:
    """A planned check: its checks table, the masks that test it (none for ``heldout``), how many
    backgrounds (or seeds) each check gets, and the level its predictions are made at."""

    settings: AblateSettings
    checks: pd.DataFrame
    design: Design | None
    backgrounds: int
    alpha: float
    level: float

    def describe(self, seconds_per_model: float | None) -> str:
        s = self.settings
        if self.design is None:
            return (f"ablate=heldout: {len(self.checks)} pairs of fit={s.fit_engine}, measured on the fit's held-out "
                    f"models (no training)")
        checks = self.checks
        if s.design == "pairs":
            what = f"{int((~checks['control']).sum())} pairs + {int(checks['control'].sum())} controls"
        else:
            ks = sorted(int(k) for k in checks["k"].unique())
            what = (f"{len(checks)} removal sets ({checks['target'].nunique()} targets x "
                    f"{', '.join(sorted(checks['method'].unique()))} x k in {ks}, background={s.background})")
        models = self.design.num_models
        shards = -(-models // s.models_per_shard)
        each = "seeds" if s.design == "removal" and s.background == "full" else "backgrounds"
        line = (f"ablate={s.design}: {what}, {self.backgrounds} {each} each: {models:,} models in {shards} shards of "
                f"{s.models_per_shard}")
        if seconds_per_model:
            # a model's time grows with the players it keeps: the design's against the run's
            scale = float(self.design.masks.mean()) / self.alpha
            minutes = models * seconds_per_model * scale / max(1, s.workers) / 60
            line += (f"; about {minutes:.0f} min with {s.workers} worker(s) at this run's {seconds_per_model:.2f} s "
                     f"a model at alpha {self.alpha:g}, times {scale:.2f} for the players these masks keep")
        return line


def _run_alpha(view: FitView, settings: AblateSettings) -> float:
    if settings.alpha is not None:
        return float(settings.alpha)
    alpha = view.meta.get("alpha")
    if view.meta["design"] == "exhaustive":
        return 0.5  # every subset once: each player kept in half of them
    if not isinstance(alpha, (int, float)):
        raise AblationError(f"this run's masks were drawn with alpha={alpha!r}: give the background's kept fraction "
                            f"as ablate.alpha=A (the fraction the fit was made at)")
    return float(alpha)


def polynomials(view: FitView, engine: str, targets, coefficients: str = "mobius") -> dict[int, TargetPolynomial]:
    """Every target's fitted polynomial of ``engine`` (error when the run has no such fit), of the
    table's ``coefficients``: ``mobius`` (the sizes the fit reports: what a pair check tests) or
    ``shrunk`` (the L1 refit's: what a greedy choice optimises, as pruning does)."""
    if engine not in view.engines():
        raise AblationError(f"{view.folder.fit_metrics_file()} holds no fit={engine} "
                            f"(fitted: {', '.join(view.engines())}): "
                            f"run jobs/fit.py fit={engine} first, or choose ablate.fit_engine / ablate.methods")
    terms = view.terms(engine=engine)
    own = {int(t): g for t, g in terms.groupby("target")}
    empty = terms.iloc[:0]
    return {int(t): TargetPolynomial(view.n, own.get(int(t), empty)["members"].to_list(),
                                     own.get(int(t), empty)[coefficients].to_numpy()) for t in targets}


def _interaction_terms(view: FitView, engine: str, members: bool = True) -> pd.DataFrame:
    """The fit's terms of order two and more (pairs, triples, ...), with ``claimed``: whether the fit
    states it (not one of :func:`~datamodels.fit.outputs.untested_interactions`); ProxySPEX's
    untested ones are not stated but still predict, so a stated pair's prediction counts the
    untested triples through it."""
    terms = view.terms(engine=engine, members=members)
    terms = terms.assign(claimed=~untested_interactions(view.interactions_arrow)[terms.index.to_numpy()])
    return terms[terms["order"] >= 2]


def _pair_checks(view: FitView, settings: AblateSettings, alpha: float) -> pd.DataFrame:
    tau = residual_sd(view, settings.fit_engine)
    polys = polynomials(view, settings.fit_engine, tau.index)
    found = fitted_pairs(_interaction_terms(view, settings.fit_engine), view.n, alpha, tau)
    if isinstance(settings.pairs, (list, tuple)):
        chosen = _named_pairs(view, settings.pairs, found, polys, tau, alpha)
    elif settings.selection == "twins":
        chosen = _named_pairs(view, _twin_pairs(view, found, polys), found, polys, tau, alpha)
    else:
        chosen = choose_pairs(found, settings.pairs, settings.selection, settings.strata, settings.seed)
    if settings.controls and settings.design != "heldout":
        chosen = pd.concat([chosen, control_pairs(chosen, found, view.n, settings.seed, polys, alpha)],
                           ignore_index=True)
    return chosen


def _named_pairs(view, triplets, found, polys, tau, alpha) -> pd.DataFrame:
    """``ablate.pairs=[[target, i, j], ...]``: the user's own pairs, with what the fit predicts of them."""
    rows = []
    for entry in triplets:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise AblationError(f"ablate.pairs: {entry!r} is not [target, i, j]")
        target, i, j = (int(v) for v in entry)
        if target not in polys:
            raise AblationError(f"ablate.pairs: target {target} has no fitted polynomial (the run has targets "
                                f"0..{view.T - 1}; {len(polys)} of them fitted)")
        if not (0 <= i < view.n and 0 <= j < view.n) or i == j:
            raise AblationError(f"ablate.pairs: players {i}, {j} must be two different players in 0..{view.n - 1}")
        i, j = min(i, j), max(i, j)
        known = found[(found["target"] == target) & (found["i"] == i) & (found["j"] == j)]
        predicted = polys[target].pair_interaction(i, j, alpha)
        rows.append((target, i, j, known["kind"].iloc[0] if len(known) else "not reported", predicted,
                     abs(predicted) / tau[target], int(known["rank"].iloc[0]) if len(known) else -1))
    chosen = pd.DataFrame(rows, columns=["target", "i", "j", "kind", "predicted", "strength", "rank"])
    return chosen.assign(stratum=0, stratum_size=len(chosen), control=False)


def _twin_pairs(view: FitView, found: pd.DataFrame, polys: dict[int, TargetPolynomial]) -> list:
    """``ablate.selection=twins``: each known twin pair of a duplicates experiment (``twins.csv``)
    on the target where the fit's term for it is strongest, or, where the fit reports none, where
    its members' main effects are largest (the target the twins matter to)."""
    if not view.folder.twins.exists():
        raise AblationError(f"ablate.selection=twins: {view.folder.twins} does not exist (a run of the duplicates "
                            f"experiment writes it: experiment=duplicates)")
    chosen = []
    for a, b in pd.read_csv(view.folder.twins)[["player_a", "player_b"]].itertuples(index=False):
        i, j = sorted((int(a), int(b)))
        fitted = found[(found["i"] == i) & (found["j"] == j)]
        if len(fitted):
            target = int(fitted["target"].iloc[0])  # ranked: the strongest first
        else:
            target = max(polys, key=lambda t: abs(polys[t].mains()[[i, j]]).sum())
        chosen.append([target, i, j])
    return chosen


def _removal_targets(view: FitView, settings: AblateSettings, alpha: float) -> list[int]:
    """``ablate.targets``: a list; ``twins``: the targets of the known twin pairs (:func:`_twin_pairs`);
    or a count: the targets of most interaction mass (the sum of their fitted pairs' and triples'
    absolute Möbius coefficients over the residual sd) and as many drawn at random from the rest."""
    tau = residual_sd(view, settings.fit_engine)
    fitted = sorted(int(t) for t in tau.index)
    if settings.targets == "twins":
        polys = polynomials(view, settings.fit_engine, fitted)
        found = fitted_pairs(_interaction_terms(view, settings.fit_engine), view.n, alpha, tau)
        return sorted({t for t, _, _ in _twin_pairs(view, found, polys)})
    if isinstance(settings.targets, (list, tuple)):
        chosen = [int(t) for t in settings.targets]
        if missing := [t for t in chosen if t not in set(fitted)]:
            raise AblationError(f"ablate.targets: {missing[:5]} have no fit={settings.fit_engine} (the run has targets "
                                f"0..{view.T - 1}; fitted: {len(fitted)})")
        return chosen
    if isinstance(settings.targets, str) or isinstance(settings.targets, bool):
        raise AblationError(f"ablate.targets={settings.targets!r} must be a count, a list of targets or 'twins'")
    count = int(settings.targets)
    if count < 1:
        raise AblationError(f"ablate.targets={count} must be at least 1")
    terms = _interaction_terms(view, settings.fit_engine, members=False)
    terms = terms[terms["claimed"]]
    mass = (terms["mobius"].abs() / tau.reindex(terms["target"]).to_numpy()).groupby(terms["target"].to_numpy()).sum()
    mass = mass.reindex(fitted, fill_value=0.0).sort_values(ascending=False, kind="stable")
    top = [int(t) for t in mass.index[:count]]
    rest = np.setdiff1d(fitted, top)
    drawn = np.random.default_rng([settings.seed, _TARGET_STREAM]).choice(rest, min(count, len(rest)), replace=False)
    return top + sorted(int(t) for t in drawn)


def _removal_checks(view: FitView, settings: AblateSettings, alpha: float, level: float) -> pd.DataFrame:
    if max(settings.ks) > view.n:
        raise AblationError(f"ablate.ks={settings.ks}: k={max(settings.ks)} is larger than the run's {view.n} players")
    targets = _removal_targets(view, settings, alpha)
    needed = {settings.fit_engine} | {m for m in settings.methods if m not in ("interactions", "random")}
    unknown = [m for m in settings.methods if m not in ("interactions", "random") and m not in view.engines()]
    if unknown:
        raise AblationError(f"ablate.methods: {unknown[0]!r} is neither interactions, random nor a fitted engine of "
                            f"this run (fitted: {', '.join(view.engines())})")
    # The removal sets are chosen by a greedy, which the relaxed sizes would lure (the optimiser's
    # curse, datamodels.pruning.surrogate): the L1 refit's coefficients choose and predict them.
    polys = {m: polynomials(view, m, targets, "shrunk") for m in sorted(needed | ({"linear"} & set(view.engines())))}
    classes = view.player_labels
    target_classes = view.sweep_run.data.labels("target") if view.sweep_run is not None else None
    return removal_sets(polys, targets, list(settings.methods), list(settings.ks), level, settings.fit_engine,
                        classes, target_classes, settings.seed)


def plan_ablation(run_dir, settings: AblateSettings) -> Plan:
    """The checks ``settings`` ask for on the run's fit, and their design, sized by the budget."""
    view = FitView.open(run_dir)
    alpha = _run_alpha(view, settings)
    if settings.design == "removal":
        level = 1.0 if settings.background == "full" else alpha
        checks = _removal_checks(view, settings, alpha, level)
        unique = len({tuple(m) for m in checks["members"]})
        per_background = unique + 1 if settings.background == "full" else 2 * unique
    else:
        level = alpha
        checks = _pair_checks(view, settings, alpha)
        per_background = 4 * len(set(zip(checks["i"], checks["j"])))
    if settings.design == "heldout":
        return Plan(settings, checks, None, 0, alpha, level)
    if view.sweep_run is None:
        raise AblationError(f"{view.run_dir} has no dataset linked (dataset=none): a retraining check trains models "
                            f"on it. ablate=heldout measures the fit's pairs on its held-out models without training")
    count = settings.backgrounds or settings.budget // per_background
    if count < 2:
        raise AblationError(f"ablate.budget={settings.budget} models cannot pay for two backgrounds of these "
                            f"{len(checks)} checks ({per_background} models each, and a standard error needs two): "
                            f"raise ablate.budget to {2 * per_background} or check fewer")
    if settings.design == "pairs":
        design = pairs_design(checks, view.n, alpha, count, settings.seed)
    else:
        design = removal_design(checks, view.n, settings.background, alpha, count, settings.seed)
    return Plan(settings, checks, design, count, alpha, level)
