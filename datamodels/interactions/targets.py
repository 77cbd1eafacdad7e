"""Many targets: the registered estimators, and fitting one per target in worker processes.

Targets are fitted in blocks: the screening pass and each KKT pass over the packed masks
(:mod:`.screening`) serve a whole block, so their cost per target falls with the block size.
Without screening (``n <= screen_k``) a block is one target. Workers are spawned processes with
one thread each; each receives the masks once, and memory-mapped masks (the fit-ready layout)
travel as their file name, so all workers share one copy of the pages. Margins travel per
block, and only a few blocks are in flight at a time, so the parent never holds more than
those of the whole margin matrix.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
from sklearn.base import clone
from tqdm.auto import tqdm

from ..errors import UserError
from ..packed import PackedMasks, as_packed
from ..processes import check_main_guard, leave_with_parent
from .batched_lasso import BatchedLinearDatamodel
from .linear import LinearDatamodel
from .proxyspex import ProxySPEX
from .screening import fit_screened, resolve_screen_k
from .spex import SPEX
from .surrogate import _check_y, _MobiusSurrogate

METHODS = {"proxyspex": ProxySPEX, "linear": LinearDatamodel, "linear_gpu": BatchedLinearDatamodel,
           "spex": SPEX}
# Targets per block: each pass over the masks serves a block, and each target of a block keeps
# its statistics (fold Grams, working-set bits) alive between passes, about 80 MB at 10^5
# models and a working set of 2,000.
BLOCK_SIZE = 16


def make_estimator(method: str, **params):
    """The estimator registered under ``method`` (``proxyspex`` or ``linear``)."""
    if method not in METHODS:
        raise UserError(f"unknown fit method {method!r}; choose one of {', '.join(METHODS)} (fit=NAME)")
    try:
        return METHODS[method](**params)
    except TypeError as err:  # a misspelt fit.params key
        raise UserError(f"fit.params of fit={method}: {err}") from err


@dataclass
class TargetFit:
    target: int
    estimator: _MobiusSurrogate
    seconds: float  # the target's share of its block's wall time


_WORKER_X: PackedMasks | None = None


def _init_worker(X: PackedMasks) -> None:
    # One thread per fit: more than one OpenMP/BLAS thread per process is pathologically slow
    # when processes share few cores (DESIGN.md). Env for any child, threadpoolctl (a
    # scikit-learn dependency) for the libraries this process has already loaded.
    global _WORKER_X
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _WORKER_X = X
    # A worker whose parent was killed would go on fitting its block (minutes at scale) for
    # nobody: it leaves as soon as it is orphaned.
    leave_with_parent()


def _fit_block(estimator, block: list[int], Y: np.ndarray, X: PackedMasks | None = None) -> list[TargetFit]:
    X = _WORKER_X if X is None else X
    start = time.perf_counter()
    name = type(estimator).__name__
    if isinstance(estimator, SPEX):  # decoded from its design's masks: no screening, no L1 path
        return [_fit_one(clone(estimator), X, y, target) for target, y in zip(block, Y.T)]
    for target, y in zip(block, Y.T):
        try:
            _check_y(y, len(X), name)
        except ValueError as err:
            raise ValueError(f"target {target}: {err}") from err
    try:
        fitted = fit_screened([clone(estimator) for _ in block], X, Y)
    except ValueError as err:
        raise ValueError(f"targets {block[0]}..{block[-1]}: {err}") from err
    seconds = (time.perf_counter() - start) / len(block)
    return [TargetFit(target, est, seconds) for target, est in zip(block, fitted)]


def _fit_one(estimator, X, y, target) -> TargetFit:
    start = time.perf_counter()
    try:
        estimator.fit(X, y)
    except ValueError as err:
        raise ValueError(f"target {target}: {err}") from err
    return TargetFit(target, estimator, time.perf_counter() - start)


def iter_fit_targets(estimator, X, Y, targets=None, rows=None, n_jobs: int = 1, block_size: int = BLOCK_SIZE,
                     progress: bool = True):
    """Yield a :class:`TargetFit` per chosen column of ``Y``, in blocks, as they finish.

    ``X``: masks of all ``M`` models (bool, 0/1 or :class:`PackedMasks`); ``Y``: array-like
    ``[M, T]`` (a transposed memory-mapped target-major matrix reads one target's row per
    column); ``rows``: the models to fit on (default all). ``n_jobs > 1`` fits in that many
    spawned workers.
    """
    X = as_packed(X, "masks")
    if len(Y.shape) != 2 or Y.shape[0] != len(X):
        raise ValueError(f"Y must be [models={len(X)}, targets]; got shape {Y.shape}")
    targets = list(range(Y.shape[1]) if targets is None else targets)
    fit_rows = X if rows is None else X[rows]
    screening = not isinstance(estimator, SPEX) and resolve_screen_k(getattr(estimator, "screen_k", None), X.n) < X.n
    size = max(1, min(block_size, -(-len(targets) // n_jobs))) if screening else 1
    blocks = iter([targets[i:i + size] for i in range(0, len(targets), size)])

    def margins(block):
        block_y = np.asarray(Y[:, block], dtype=float)
        return block_y if rows is None else block_y[rows]

    bar = tqdm(total=len(targets), desc=f"fit {type(estimator).__name__}", disable=not progress)
    if n_jobs == 1:
        for block in blocks:
            yield from _fit_block(estimator, block, margins(block), fit_rows)
            bar.update(len(block))
    else:
        check_main_guard(f"fitting with {n_jobs} workers")
        context = get_context("spawn")  # fork after OpenMP has started can deadlock the child
        with ProcessPoolExecutor(n_jobs, context, _init_worker, (fit_rows,)) as pool:
            running = set()

            def submit():
                block = next(blocks, None)
                if block is not None:
                    running.add(pool.submit(_fit_block, estimator, block, margins(block)))

            for _ in range(2 * n_jobs):  # a few blocks in flight: margins stay bounded
                submit()
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    fits = future.result()
                    yield from fits
                    bar.update(len(fits))
                    submit()
    bar.close()


def fit_targets(estimator, X, Y, targets=None, rows=None, n_jobs: int = 1, block_size: int = BLOCK_SIZE,
                progress: bool = True) -> list[TargetFit]:
    """Fit a clone of ``estimator`` to each chosen column of ``Y [m, T]``; list in target order
    (see :func:`iter_fit_targets`)."""
    fits = {fit.target: fit for fit in iter_fit_targets(estimator, X, Y, targets, rows, n_jobs, block_size,
                                                         progress)}
    return [fits[t] for t in (range(Y.shape[1]) if targets is None else targets)]
