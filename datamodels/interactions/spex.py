"""SPEX, after Kang et al., "SPEX: Scaling Feature Interaction Explanations for LLMs" (ICML 2025):
masks chosen by a structured design (random subsampling matrices ``M`` times every ``b``-bit
vector, shifted by the rows of a BCH code's parity matrix), whose sparse Fourier transform is
decoded by peeling and BCH syndrome decoding. No hierarchy assumption: a pure interaction with
no main effects is found like any other term. The price is the design itself: SPEX reads the
margins of exactly the masks it asked for, so its sweep must train them (``sweep.design=spex``).

The work is done by ``sparse_transform`` (the backend of shapiq's SPEX, installed with the
``spex`` extra, ``pip install -e '.[spex]'``), with the settings of shapiq 1.4.1's
``shapiq.approximator.SPEX``. shapiq's class itself is not driven because (1) it only returns
converted indices (FBII, k-SII, ...; ``index="Moebius"`` is refused), while this tool's output
is the sparse Möbius spectrum, and the k-SII conversion of that release is known to aggregate
twice; (2) it draws its subsampling matrices from numpy's global random state and ignores its
``random_state``, while a sweep's masks must be a pure function of the sweep seed. Written here
by hand, therefore, only: seeding that global state around the backend (and restoring it), the
game that answers the backend from the recorded table of (mask -> mean margin), and the
Fourier -> Möbius conversion of :mod:`.spectra`.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from sklearn.base import clone

from ..errors import UserError
from ..packed import as_packed
from .engine import Engine, check_margins, is_integer
from .spectra import fourier_to_mobius

# shapiq 1.4.1's SPEX settings (shapiq/approximator/sparse/base.py, Sparse.__init__).
_QUERY_ARGS = {"query_method": "complex", "num_subsample": 3, "delays_method_source": "joint-coded",
               "subsampling_method": "qsft", "delays_method_channel": "identity-siso", "num_repeat": 1}
_DECODER_ARGS = {"num_subsample": 3, "num_repeat": 1, "reconstruct_method_source": "coded",
                 "peeling_method": "multi-detect", "regress": "lasso", "res_energy_cutoff": 0.9}
# shapiq refuses b <= 2 (too few buckets for peeling to work): 2^3 buckets per subsampling.
_MIN_B = 3


def _backend():
    try:
        from sparse_transform.qsft.qsft import transform
        from sparse_transform.qsft.signals.input_signal_subsampled import SubsampledSignal
        from sparse_transform.qsft.utils.query import get_bch_decoder
    except ImportError as err:
        raise ImportError("SPEX (sweep.design=spex, fit=spex) needs the optional `spex` extra: "
                          "pip install -e '.[spex]' (shapiq==1.4.1 and its sparse-transform)") from err
    return SubsampledSignal, transform, get_bch_decoder


@contextmanager
def _seeded_global_random(seed: int):
    """The backend draws from numpy's and Python's global generators: seed them, then restore."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _query_args(degree: int, b: int) -> dict:
    return {**_QUERY_ARGS, "t": degree, "b": b}


def spex_plan(n: int, budget: int, degree: int = 5) -> tuple[int, int]:
    """``(b, masks)``: the largest subsampling dimension ``b`` whose design fits in ``budget``,
    and how many masks that design asks for (``<= budget``). A budget below the smallest design
    (``b = 3``) is refused with the smallest budget that would do."""
    SubsampledSignal = _backend()[0]
    if n < 2 or degree < 1:
        raise UserError(f"SPEX needs n >= 2 players and degree >= 1; got n={n}, degree={degree}")
    query_args = _query_args(degree, _MIN_B)
    smallest = SubsampledSignal.get_number_of_samples(n, _MIN_B, degree, 2, query_args)
    if budget is None or budget < smallest:
        lower = ", ".join(f"{SubsampledSignal.get_number_of_samples(n, _MIN_B, t, 2, _query_args(t, _MIN_B))} "
                          f"at degree {t}" for t in range(degree - 1, 0, -1))
        raise UserError(f"a SPEX design for n={n} players at degree {degree} needs a budget of at least "
                         f"{smallest} masks; got {budget}" + (f" (smaller degrees need: {lower})" if lower else ""))
    b = SubsampledSignal.get_b_for_sample_budget(budget, n, degree, 2, query_args)
    return b, SubsampledSignal.get_number_of_samples(n, b, degree, 2, _query_args(degree, b))


def _signal(n: int, budget: int, seed: int, degree: int, answer):
    SubsampledSignal = _backend()[0]
    b, _ = spex_plan(n, budget, degree)
    with _seeded_global_random(seed):
        return SubsampledSignal(func=answer, n=n, q=2, query_args=_query_args(degree, b)), b


@lru_cache(maxsize=8)
def spex_design(n: int, budget: int, seed: int, degree: int = 5) -> np.ndarray:
    """Bool ``[Q, n]``: the masks SPEX asks for, in the order it asks; a pure function of
    ``(n, budget, seed, degree)`` (read-only: cached for the sweep's workers). Some masks
    repeat (the all-absent mask in every subsampling, for one)."""
    asked = []

    def record(masks):
        asked.append(np.asarray(masks, dtype=bool))
        return np.zeros(len(masks))

    _signal(n, budget, seed, degree, record)
    design = np.concatenate(asked)
    design.setflags(write=False)
    return design


def _mask_keys(masks: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in np.packbits(masks, axis=1)]


class SPEX(Engine, name="spex"):
    """Sparse Fourier/Möbius spectrum of a game decoded from SPEX's designed masks (Kang et al., 2025).

    ``budget``, ``seed`` and ``degree`` name the design (:func:`spex_design`); the fit stage
    takes them from a ``sweep.design=spex`` run (``fit.params`` may set them, e.g. to read SPEX's
    masks out of an exhaustive sweep, which holds every mask). ``fit(X, y)`` needs every mask of
    the design among the rows of ``X`` (repeats of a mask are averaged) and ignores the other
    rows; :meth:`design_rows` tells them apart, and the fit stage judges SPEX on the others.
    ``decoder``: ``hard`` or ``soft`` (chase) BCH decoding, as in shapiq. Hooks of the fit stage:
    the held-out models are those outside the design (:meth:`heldout_models`), the design's
    settings come from the run (:meth:`params_from_run`), and on an exhaustive game it reads
    the subsets of its design at each budget (:meth:`at_budget`).

    Fitted: ``mobius_``, ``fourier_``, ``b_`` (subsampling dimension), ``design_masks_`` (the
    number of masks the design asked for), ``players_`` (all ``n``).
    """

    min_models = 1  # its design decides which models it reads

    def __init__(self, budget: int | None = None, seed: int = 0, degree: int = 5, decoder: str = "hard"):
        self.budget = budget
        self.seed = seed
        self.degree = degree
        self.decoder = decoder

    def _check_params(self) -> None:
        if self.budget is None:
            raise UserError("SPEX: budget is not set; fit a sweep of sweep.design=spex (the fit stage reads its "
                             "budget and seed), or set fit.params.budget and fit.params.seed")
        # Whether the budget holds a design for n players (spex_plan) waits for the masks.
        self._require("budget", is_integer(self.budget) and self.budget >= 1, "be an integer >= 1")
        self._require("seed", is_integer(self.seed), "be an integer")
        self._require("degree", is_integer(self.degree) and self.degree >= 1, "be an integer >= 1")
        self._require("decoder", isinstance(self.decoder, str) and self.decoder in ("hard", "soft"),
                      "be 'hard' or 'soft'")

    def _design(self, n: int) -> np.ndarray:
        return spex_design(n, int(self.budget), int(self.seed), int(self.degree))

    def design_rows(self, X) -> np.ndarray:
        """Bool ``[m]``: the rows of ``X`` whose mask is one SPEX's design asks for."""
        self._check_params()
        X = as_packed(X)
        wanted = set(_mask_keys(self._design(X.n)))
        return np.array([key in wanted for key in _mask_keys(X.unpack())])

    def fit(self, X, y):
        self._check_params()
        X = as_packed(X)
        y = check_margins(y, len(X), "SPEX", min_models=1)
        design = self._design(X.n)
        sums: dict[bytes, list[float]] = {}
        for key, value in zip(_mask_keys(X.unpack()), y):
            sums.setdefault(key, [0.0, 0])
            sums[key][0] += value
            sums[key][1] += 1
        keys = _mask_keys(design)
        missing = sum(key not in sums for key in set(keys))
        if missing:
            raise UserError(f"SPEX: {missing} of the {len(set(keys))} distinct masks of its design (n={X.n}, "
                             f"budget={self.budget}, seed={self.seed}, degree={self.degree}) are not among the "
                             f"{len(X)} models; fit=spex reads a sweep of sweep.design=spex with the same budget "
                             f"and seed (or an exhaustive sweep, which holds every mask)")
        table = {key: total / count for key, (total, count) in sums.items()}

        def answer(masks):  # the backend's game: the recorded margins, never a new training
            return np.array([table[key] for key in _mask_keys(np.asarray(masks, dtype=bool))])

        _, transform, get_bch_decoder = _backend()
        signal, b = _signal(X.n, int(self.budget), int(self.seed), int(self.degree), answer)
        decoder_args = {**_DECODER_ARGS, "b": b,
                        "reconstruct_method_channel": "identity-siso" if self.decoder == "soft" else "identity",
                        "source_decoder": get_bch_decoder(X.n, int(self.degree), self.decoder)}
        with _seeded_global_random(int(self.seed)):
            fourier = transform(signal, **decoder_args)
        fourier = {tuple(int(i) for i in np.flatnonzero(k)): float(np.real(v)) for k, v in fourier.items()}
        self.b_, self.design_masks_, self.penalty_ = b, len(design), float("nan")
        self.players_, self.kkt_added_, self.penalty_at_floor_ = np.arange(X.n), 0, False
        self._set_spectrum({S: v for S, v in fourier_to_mobius(fourier).items() if v != 0 or S == ()}, X.n)
        return self

    @classmethod
    def params_from_run(cls, run: dict, params: dict) -> dict:
        """The design of a ``sweep.design=spex`` run: its budget, seed and degree, unless
        ``fit.params`` names a design (to read SPEX's masks out of an exhaustive sweep)."""
        params = {key: value for key, value in params.items() if value is not None}
        if "budget" in params:
            return params
        if run.get("design") != "spex":
            raise UserError(f"fit=spex decodes the masks of SPEX's own design, and this sweep's design is "
                            f"{run.get('design')!r}: run a sweep with sweep.design=spex sweep.budget=B, or give "
                            f"fit.params.budget (and seed) to read them out of a sweep that holds them (exhaustive)")
        if params.get("degree", run["degree"]) != run["degree"]:
            raise UserError(f"fit.params.degree={params['degree']}, but this sweep's SPEX design has degree "
                            f"{run['degree']} (sweep.degree): drop fit.params.degree, it is read from the run")
        return params | {"budget": run["budget"], "seed": run["sweep_seed"], "degree": run["degree"]}

    def heldout_models(self, X, mask_id, fraction: float, seed: int) -> np.ndarray:
        """Every model whose mask is not one of the design's: SPEX reads exactly those it asked for."""
        held = ~self.design_rows(X)
        if not held.any():
            raise UserError("fit=spex: every mask of the sweep is one SPEX's design asked for, none is left to "
                            "judge it on (a sweep of sweep.design=spex adds judging masks; was sweep.num_models "
                            "cut short?)")
        return held

    def at_budget(self, n: int, budget: int, sampled: np.ndarray) -> tuple[SPEX, np.ndarray]:
        """SPEX at ``budget`` reads the distinct subsets its design asks for (an exhaustive game
        holds every subset), not the random sample."""
        engine = clone(self).set_params(budget=budget)
        engine._check_params()  # before its design is drawn
        return engine, np.unique(spex_design(n, budget, self.seed, self.degree) @ (1 << np.arange(n)))
