"""The linear datamodel for many targets at once, on a GPU.

The CPU path (:class:`.LinearDatamodel` through :mod:`.targets`) solves each target's Lasso by
coordinate descent on a screened working set. A GPU wants another shape, the one of the
datamodels code's ``fast_l1`` (Ilyas et al. 2022): the masks sit in device memory, every target
of a batch walks its own penalty path at the same time, each step is two products with the whole
mask matrix, and each target keeps the penalty that predicts a validation split best. Here each
step is one FISTA iteration (Beck & Teboulle 2009) on all training models rather than fast_l1's
minibatch SAGA: once the masks fit in the device's memory (10^5 x 50,000 are 20 GB as float32),
full products are what the device does best, and FISTA's convergence needs no step schedule.
Written by hand because no maintained library fits L1 paths for many responses on a GPU
(scikit-learn, skglm and celer are CPU solvers).

The solution at a penalty is the Lasso's (the same objective as scikit-learn's ``Lasso``, up
to the tolerance; tests/test_batched_lasso.py); the penalty is chosen on one validation split
(grouped by mask id, so repeats of a mask stay on one side) instead of the CPU path's K folds,
and the fit is then redone on all models at that penalty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import UserError
from ..packed import PackedMasks, as_packed
from .engine import Engine, check_margins, is_integer, is_real, require
from .linear import LinearDatamodel
from .targets import TargetFit

# Rows of packed masks moved to the device and unpacked there per step.
_UPLOAD_ROWS = 4096
# Convergence is checked (a device-to-host sync) every this many iterations.
_CHECK_EVERY = 10


@dataclass
class BatchedLinearFit:
    """Per-target linear datamodels ``y ~ intercept + X coef``; columns are targets."""

    coef: np.ndarray  # float32 [n, T]
    intercept: np.ndarray  # float64 [T]
    penalty: np.ndarray  # float64 [T]: the chosen L1 penalty
    penalties: np.ndarray  # float64 [n_penalties, T]: each target's path
    val_mse: np.ndarray  # float64 [n_penalties, T]: validation error along the path (NaN past its early stop)
    validation: np.ndarray  # bool [m]: the models that chose the penalty (all repeats of a mask on one side)

    def predict(self, X) -> np.ndarray:
        """Float64 ``[m, T]`` predictions for masks ``X`` (bool, 0/1 or :class:`PackedMasks`)."""
        X = as_packed(X, "masks")
        out = np.empty((len(X), self.coef.shape[1]))
        step = 8192
        for start, chunk in X.packed_chunks(step):
            bits = np.unpackbits(chunk, axis=1, count=X.n).astype(np.float32)
            out[start:start + step] = bits @ self.coef + self.intercept
        return out


def _upload(X: PackedMasks, device) -> torch.Tensor:
    """Float32 ``[m, n]`` on ``device``: packed rows sent over, unpacked there."""
    out = torch.empty((len(X), X.n), dtype=torch.float32, device=device)
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=device)
    for start, chunk in X.packed_chunks(_UPLOAD_ROWS):
        packed = torch.from_numpy(np.ascontiguousarray(chunk)).to(device)
        bits = (packed.unsqueeze(-1) >> shifts) & 1
        out[start:start + len(chunk)] = bits.reshape(len(chunk), -1)[:, :X.n]
    return out


class _CentredDesign:
    """Products with the column-centred masks ``X - 1 mu^T`` without forming them."""

    def __init__(self, X: torch.Tensor):
        self.X, self.m = X, X.shape[0]
        self.mu = X.mean(0)

    def dot(self, beta: torch.Tensor) -> torch.Tensor:
        return self.X @ beta - self.mu @ beta

    def t_dot(self, r: torch.Tensor) -> torch.Tensor:
        return self.X.T @ r - torch.outer(self.mu, r.sum(0))

    def lipschitz(self, iterations: int = 50) -> float:
        """Largest eigenvalue of ``X_c^T X_c / m`` (power iteration), with a 2% margin."""
        v = torch.ones((self.X.shape[1], 1), dtype=self.X.dtype, device=self.X.device)
        v[::2] = -1.0  # not aligned with the centred columns' null direction
        value = 0.0
        for _ in range(iterations):
            w = self.t_dot(self.dot(v)) / self.m
            value = float(w.norm())
            v = w / max(value, 1e-30)
        return 1.02 * value


def _fista(design: _CentredDesign, Yc: torch.Tensor, penalty: torch.Tensor, beta: torch.Tensor, step: float,
           max_iter: int, tol: float) -> torch.Tensor:
    """Minimise ``||Yc - X_c B||^2 / (2m) + sum_t penalty_t ||B_t||_1`` from ``beta``, per column.

    Stops when no coefficient moved more than ``tol`` times the column's largest coefficient over
    the last iteration, checked every few iterations (or after ``max_iter``).
    """
    threshold = step * penalty
    z, t = beta.clone(), 1.0
    for iteration in range(1, max_iter + 1):
        grad = -design.t_dot(Yc - design.dot(z)) / design.m
        new = z - step * grad
        new = torch.sign(new) * torch.clamp(new.abs() - threshold, min=0.0)
        t_next = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        z = new + ((t - 1.0) / t_next) * (new - beta)
        moved = (new - beta).abs().amax(0)
        beta, t = new, t_next
        if iteration % _CHECK_EVERY == 0:
            scale = beta.abs().amax(0).clamp(min=1e-12)
            if bool((moved <= tol * scale).all()):
                break
    return beta


def _is_device(value) -> bool:
    try:
        torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def check_solver_settings(owner: str, settings: dict) -> None:
    """:func:`fit_linear_batched`'s settings (``fit=linear_gpu``'s parameters), each in its
    domain; ``owner`` names the caller in the message."""
    def check(name, ok, must):
        require(owner, name, settings[name], ok(settings[name]), must)

    check("device", _is_device, "name a torch device ('cuda', 'cuda:1', 'cpu')")
    for name in ("n_penalties", "patience", "max_iter", "target_batch"):
        check(name, lambda v: is_integer(v) and v >= 1, "be an integer >= 1")
    for name in ("eps", "val_fraction"):
        check(name, lambda v: is_real(v) and 0 < v < 1, "lie in (0, 1)")
    check("tol", lambda v: is_real(v) and v >= 0, "be a number >= 0")
    check("seed", lambda v: is_integer(v) and v >= 0, "be an integer >= 0")  # default_rng refuses a negative seed


def fit_linear_batched(X, Y, device: str = "cuda", n_penalties: int = 40, eps: float = 1e-3,
                       val_fraction: float = 0.2, groups=None, seed: int = 0, patience: int = 5,
                       max_iter: int = 500, tol: float = 1e-4, target_batch: int = 1000,
                       progress: bool = True) -> BatchedLinearFit:
    """Linear datamodels of every column of ``Y [m, T]`` on masks ``X [m, n]``, on ``device``.

    Each target's path has ``n_penalties`` penalties from its largest useful one (every
    coefficient zero) down to ``eps`` times that, warm-started, fitted on the models outside a
    validation split of ``val_fraction`` (``groups``, e.g. mask ids, are kept on one side). The
    path stops once every target of the batch has gone ``patience`` penalties without a better
    validation error. Each target is then refitted on all models at its best penalty. Targets
    go through in batches of ``target_batch`` (device memory: the masks as float32, plus about
    ``6 n + 2 m`` floats per target of a batch).
    """
    check_solver_settings("fit_linear_batched", dict(
        device=device, n_penalties=n_penalties, eps=eps, val_fraction=val_fraction, patience=patience,
        max_iter=max_iter, tol=tol, target_batch=target_batch, seed=seed))
    X = as_packed(X, "masks")
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or len(Y) != len(X):
        raise ValueError(f"Y must be [models={len(X)}, targets]; got shape {Y.shape}")
    bad = ~np.isfinite(Y).all(0)
    if bad.any():
        raise ValueError(f"margins of targets {np.flatnonzero(bad)[:10].tolist()} hold NaN or inf values")
    groups = np.arange(len(X)) if groups is None else np.asarray(groups)
    _, group_index = np.unique(groups, return_inverse=True)
    val = np.random.default_rng(seed).random(group_index.max() + 1)[group_index] < val_fraction
    if val.all() or not val.any():
        raise ValueError(f"the validation split of {len(X)} models is {'everything' if val.all() else 'empty'}")
    order = np.concatenate([np.flatnonzero(~val), np.flatnonzero(val)])
    m_fit = int((~val).sum())

    data = _upload(X[order], device)  # fit rows first, then validation rows: both are views
    everything, fitting = _CentredDesign(data), _CentredDesign(data[:m_fit])
    held = data[m_fit:]
    step_fit, step_all = 1.0 / fitting.lipschitz(), 1.0 / everything.lipschitz()
    ratios = eps ** (np.arange(n_penalties) / max(n_penalties - 1, 1))

    T = Y.shape[1]
    coef, intercept = np.zeros((X.n, T), dtype=np.float32), np.zeros(T)
    penalty, penalties, val_mse = np.zeros(T), np.zeros((n_penalties, T)), np.full((n_penalties, T), np.nan)
    bar = tqdm(total=T, desc="fit linear (batched)", disable=not progress)
    for lo in range(0, T, target_batch):
        cols = slice(lo, min(lo + target_batch, T))
        Yb = torch.from_numpy(Y[order, cols]).to(device)
        Y_fit, Y_val = Yb[:m_fit], Yb[m_fit:]
        mean_fit = Y_fit.mean(0)
        Yc = Y_fit - mean_fit
        top = (fitting.t_dot(Yc).abs().amax(0) / m_fit).clamp(min=1e-12)
        beta = torch.zeros((X.n, Yb.shape[1]), dtype=torch.float32, device=device)
        best_beta, best_mse = beta.clone(), torch.full((Yb.shape[1],), float("inf"), device=device)
        since_best = torch.zeros(Yb.shape[1], dtype=torch.int64, device=device)
        for k, ratio in enumerate(ratios):
            beta = _fista(fitting, Yc, top * ratio, beta, step_fit, max_iter, tol)
            pred = held @ beta - fitting.mu @ beta + mean_fit
            mse = ((Y_val - pred) ** 2).mean(0)
            better = mse < best_mse
            best_beta[:, better] = beta[:, better]
            best_mse = torch.where(better, mse, best_mse)
            since_best = torch.where(better, 0, since_best + 1)
            penalties[k, cols] = (top * ratio).cpu().numpy()
            val_mse[k, cols] = mse.cpu().numpy()
            if bool((since_best >= patience).all()):
                break
        best = np.nanargmin(val_mse[:, cols], axis=0)
        chosen = torch.from_numpy(penalties[best, np.arange(lo, cols.stop)]).to(device=device, dtype=torch.float32)
        mean_all = Yb.mean(0)
        beta = _fista(everything, Yb - mean_all, chosen, best_beta, step_all, max_iter, tol)
        coef[:, cols] = beta.cpu().numpy()
        intercept[cols] = (mean_all - everything.mu @ beta).double().cpu().numpy()
        penalty[cols] = chosen.double().cpu().numpy()
        bar.update(Yb.shape[1])
    bar.close()
    return BatchedLinearFit(coef, intercept, penalty, penalties, val_mse, val)


class BatchedLinearDatamodel(Engine, name="linear_gpu"):
    """``fit=linear_gpu``: the linear datamodel of many targets at once, on a GPU.

    Its parameters are :func:`fit_linear_batched`'s. :meth:`fit_targets` (the fit stage's
    entry) fits whole batches of ``target_batch`` targets on the device, instead of the worker
    processes of :func:`.targets.iter_fit_targets`; each target comes out as a fitted
    :class:`.LinearDatamodel` over all players. :meth:`fit` fits one target the same way.
    """

    def __init__(self, device: str = "cuda", n_penalties: int = 40, eps: float = 1e-3, val_fraction: float = 0.2,
                 patience: int = 5, max_iter: int = 500, tol: float = 1e-4, target_batch: int = 1000,
                 seed: int = 0):
        self.device = device
        self.n_penalties = n_penalties
        self.eps = eps
        self.val_fraction = val_fraction
        self.patience = patience
        self.max_iter = max_iter
        self.tol = tol
        self.target_batch = target_batch
        self.seed = seed

    def _check_params(self) -> None:
        check_solver_settings(type(self).__name__, self.get_params())

    def _solver_settings(self) -> dict:
        import torch

        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise UserError(f"fit=linear_gpu runs on a GPU (device={self.device!r}) and torch sees none; "
                            f"fit=linear fits the same model on CPUs, or set fit.params.device=cpu")
        return {k: v for k, v in self.get_params().items() if k != "target_batch"}

    def fit(self, X, y):
        """One target's linear datamodel (validation split of models, then refit on all)."""
        self._check_params()
        X = as_packed(X, "masks")
        y = check_margins(y, len(X), type(self).__name__)
        solution = fit_linear_batched(X, y[:, None], target_batch=1, progress=False, **self._solver_settings())
        model = LinearDatamodel.from_solution(solution.coef[:, 0], solution.intercept[0], solution.penalty[0])
        self.penalty_, self.players_ = model.penalty_, model.players_
        self._set_spectrum(model.mobius_, X.n)
        return self

    def fit_targets(self, X, Y, targets=None, rows=None, groups=None, workers: int = 1, progress: bool = True):
        """Yield a :class:`.targets.TargetFit` per chosen column of ``Y [m, T]``, a batch at a time.

        ``rows``: the models to fit on (default all); ``groups``: their mask ids, so that
        repeats of a mask stay on one side of the validation split. ``workers`` is not used:
        the device does the work.
        """
        self._check_params()
        settings = self._solver_settings()
        X = as_packed(X, "masks")
        targets = list(range(Y.shape[1]) if targets is None else targets)
        fit_rows = X if rows is None else X[rows]
        bar = tqdm(total=len(targets), desc="fit linear (GPU, batched)", disable=not progress)
        for lo in range(0, len(targets), self.target_batch):
            batch = targets[lo:lo + self.target_batch]
            Y_batch = np.asarray(Y[:, batch], dtype=np.float32)
            start = time.perf_counter()
            fit = fit_linear_batched(fit_rows, Y_batch if rows is None else Y_batch[rows], groups=groups,
                                     target_batch=len(batch), progress=False, **settings)
            seconds = (time.perf_counter() - start) / len(batch)
            for j, target in enumerate(batch):
                model = LinearDatamodel.from_solution(fit.coef[:, j], fit.intercept[j], fit.penalty[j])
                yield TargetFit(target, model, seconds)
            bar.update(len(batch))
        bar.close()
