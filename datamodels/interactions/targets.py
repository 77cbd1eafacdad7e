"""Many targets: fitting one engine per target in blocks and worker processes.

Targets are fitted in blocks of the engine's :meth:`~.engine.Engine.block_size`: the screened
engines' screening pass and each KKT pass over the packed masks (:mod:`.screening`) serve a
whole block, so their cost per target falls with the block size. Workers are spawned processes
with one thread each; each receives the masks once, and memory-mapped masks (the fit-ready
layout) travel as their file name, so all workers share one copy of the pages. Margins travel
per block, and only a few blocks are in flight at a time, so the parent never holds more than
those of the whole margin matrix.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
from tqdm.auto import tqdm

from ..packed import PackedMasks, as_packed
from ..processes import check_main_guard, leave_with_parent


@dataclass
class TargetFit:
    """One target's fitted engine (an :class:`~.engine.Engine`) and its share of the wall time."""

    target: int
    estimator: object
    seconds: float  # the target's share of its block's wall time


_WORKER_X: PackedMasks | None = None


def _init_worker(X: PackedMasks) -> None:
    # One thread per fit: more than one OpenMP/BLAS thread per process is pathologically slow
    # when processes share few cores (../shared/DESIGN.md). Env for any child, threadpoolctl (a
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


def _fit_block(engine, block: list[int], Y: np.ndarray, X: PackedMasks | None = None) -> list[TargetFit]:
    return engine.fit_block(_WORKER_X if X is None else X, Y, block)


def iter_fit_targets(engine, X, Y, targets=None, rows=None, n_jobs: int = 1, block_size: int | None = None,
                     progress: bool = True):
    """Yield a :class:`TargetFit` per chosen column of ``Y``, in blocks, as they finish.

    ``X``: masks of all ``M`` models (bool, 0/1 or :class:`PackedMasks`); ``Y``: array-like
    ``[M, T]`` (a transposed memory-mapped target-major matrix reads one target's row per
    column); ``rows``: the models to fit on (default all). ``n_jobs > 1`` fits in that many
    spawned workers. ``block_size``: targets per block (default: the engine's, spread so that
    every worker has work).
    """
    X = as_packed(X, "masks")
    if len(Y.shape) != 2 or Y.shape[0] != len(X):
        raise ValueError(f"Y must be [models={len(X)}, targets]; got shape {Y.shape}")
    targets = list(range(Y.shape[1]) if targets is None else targets)
    fit_rows = X if rows is None else X[rows]
    size = engine.block_size(X.n) if block_size is None else block_size
    size = max(1, min(size, -(-len(targets) // n_jobs)))
    blocks = iter([targets[i:i + size] for i in range(0, len(targets), size)])

    def margins(block):
        block_y = np.asarray(Y[:, block], dtype=float)
        return block_y if rows is None else block_y[rows]

    bar = tqdm(total=len(targets), desc=f"fit {type(engine).__name__}", disable=not progress)
    if n_jobs == 1:
        for block in blocks:
            yield from _fit_block(engine, block, margins(block), fit_rows)
            bar.update(len(block))
    else:
        check_main_guard(f"fitting with {n_jobs} workers")
        context = get_context("spawn")  # fork after OpenMP has started can deadlock the child
        with ProcessPoolExecutor(n_jobs, context, _init_worker, (fit_rows,)) as pool:
            running = set()

            def submit():
                block = next(blocks, None)
                if block is not None:
                    running.add(pool.submit(_fit_block, engine, block, margins(block)))

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


def fit_targets(engine, X, Y, targets=None, rows=None, n_jobs: int = 1, block_size: int | None = None,
                progress: bool = True) -> list[TargetFit]:
    """Fit a clone of ``engine`` to each chosen column of ``Y [m, T]``; list in target order
    (see :func:`iter_fit_targets`)."""
    fits = {fit.target: fit for fit in iter_fit_targets(engine, X, Y, targets, rows, n_jobs, block_size,
                                                         progress)}
    return [fits[t] for t in (range(Y.shape[1]) if targets is None else targets)]
