"""TRAK as the cheap-attribution anchor: a linear surrogate over the players from K models.

TRAK (Park et al., ICML 2023, "TRAK: Attributing Model Behavior at Scale") scores training
example ``i`` for target ``z`` as ``phi(z)^T (Phi^T Phi)^{-1} phi_i (1 - p_i)``, averaged over
an ensemble of trained models: ``phi`` are randomly projected gradients of the model output,
``Phi`` stacks them over the training set and ``p_i`` is the model's probability of example
``i``'s label. The computation is dattri's ``TRAKAttributor`` (the optional extra ``trak``);
this module supplies the model, the output functions and the data, and turns the scores into the
fit stage's tables:

- **Output functions.** Training examples use TRAK's ``log(p / (1 - p))`` (the correct logit
  minus the log-sum-exp of the others), the function whose gradient the one-step Newton
  approximation of retraining is written in; targets use the sweep's own margin (correct logit
  minus the largest other, :func:`datamodels.sweep.train.margins_of`), since that is what is attributed.
- **Ensemble.** The K models are the first K models of the fit split of the sweep, retrained
  with their own masks and seeds (a sweep is a pure function of its seed, so these are the models
  whose margins the store holds, up to float rounding where the sweep stacked models per pass):
  TRAK on K models costs the training compute of K sweep models, which is what its comparison
  with the datamodels at equal compute needs.
- **Players.** A player switches all its examples on or off together, so its weight is the sum
  of its examples' scores (:func:`player_weights`): for target ``t`` the surrogate predicts
  ``margin(S) = b_t + a_t * sum_{i in S} s_{t,i}``.
- **Units.** TRAK's scores are not calibrated in margin units. ``a_t`` and ``b_t`` come from a
  least-squares fit, per target, of the sweep's margins on the raw prediction ``sum_{i in S}
  s_{t,i}`` over the *fitting* models of the sweep (never the held-out ones), so the surrogate's
  R^2 and the pruning greedy's residual scales read in margins. A positive ``a_t`` leaves the
  ranking, hence the held-out LDS, unchanged; a negative one (TRAK ranks the wrong way round for
  that target) flips it, which the table's ``slope`` column shows.

:func:`run_trak` writes a fit of engine ``trak`` into the fit stage's two tables through
:func:`datamodels.fit.outputs.save_fit`, exactly as ``fit=linear`` adds its rows beside ProxySPEX's:
order-1 terms (Möbius value = calibrated weight) and one metrics row per target with the
held-out R^2 and LDS on the fit stage's held-out split
(:func:`datamodels.interactions.engine.heldout_split`). So :func:`datamodels.pruning.load_surrogates`,
the report and the pruning method ``trak`` read it like any fit. Its skip record is
``fit/.inputs-trak.json``; the other engines' records read only the fit-ready layout, so adding
the ``trak`` rows leaves their fits skipped when unchanged.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import sparse

from ..errors import UserError
from ..interactions import interaction_table
from ..interactions.engine import heldout_split
from ..run.folder import RunFolder
from ..run.stage_inputs import StageInputs
from ..run.stage_result import StageResult
from ..settings import Settings
from ..store.fit_ready import MANIFEST, open_fit_ready
from ..sweep.masks import kept_examples
from ..sweep.train import margins_of, train_network
from .faithfulness import noise_ceiling, r2, spearman
from .outputs import INTERACTION_COLUMNS, METRIC_COLUMNS, save_fit, tables_meta

ENGINE = "trak"
# dattri's projections on CPU.
PROJECTIONS = ("normal", "rademacher", "random_mask", "identity")
# Rows of masks unpacked at once when predicting from the surrogate (n players each).
_CHUNK = 4096


def _dattri():
    """dattri's task and attributor, imported only when TRAK runs (the optional extra ``trak``)."""
    try:
        from dattri.algorithm.trak import TRAKAttributor
        from dattri.task import AttributionTask
    except ImportError:
        raise UserError("TRAK needs the optional extra 'trak' (dattri): pip install -e '.[trak]'") from None
    return AttributionTask, TRAKAttributor


@dataclass
class TrakSettings(Settings):
    """``conf/trak/default.yaml``: ``models`` (K), the projection (``proj_dim``, ``proj_type``,
    ``seed``), ``regularization`` (added to ``Phi^T Phi``'s diagonal), and the fit stage's
    held-out split (``heldout_fraction``, ``split_seed``) that judges it beside the other fits."""

    section = "trak"
    models: int = 10
    proj_dim: int = 512
    proj_type: str = "normal"
    seed: int = 0
    regularization: float = 0.0
    heldout_fraction: float = 0.2
    split_seed: int = 0
    batch_size: int = 100

    def __post_init__(self):
        self.check_integers(("models", "proj_dim", "batch_size"), least=1)
        if self.proj_type not in PROJECTIONS:
            raise UserError(f"trak.proj_type={self.proj_type!r}; choose one of {', '.join(PROJECTIONS)}")
        if self.regularization < 0:
            raise UserError(f"trak.regularization={self.regularization} must be >= 0")


def _output_functions(model: torch.nn.Module):
    """TRAK's training-side output, the target margin and the correct-label probability, each of
    ``(params, (x, y))`` for one example, as dattri calls them under ``vmap``."""

    def logits(params, x):
        return torch.func.functional_call(model, params, (x.unsqueeze(0),))

    def train_output(params, data):
        x, y = data
        z = logits(params, x)[0]
        others = z.scatter(0, y.view(1), float("-inf"))
        return z.gather(0, y.view(1))[0] - torch.logsumexp(others, 0)

    def target_margin(params, data):
        x, y = data
        return margins_of(logits(params, x), y.view(1))[0]

    def probability(params, data):
        x, y = data
        return torch.exp(-F.cross_entropy(logits(params, x), y.view(1)))

    return train_output, target_margin, probability


def trak_scores(model: torch.nn.Module, checkpoints: list[dict], train_x: torch.Tensor, train_y: torch.Tensor,
                target_x: torch.Tensor, target_y: torch.Tensor, proj_dim: int = 512, proj_type: str = "normal",
                seed: int = 0, regularization: float = 0.0, batch_size: int = 100, progress: bool = True) -> np.ndarray:
    """TRAK scores ``[T, N]`` of ``N`` training examples for ``T`` targets from an ensemble of
    ``checkpoints`` (state dicts of ``model``'s architecture), by dattri's ``TRAKAttributor``,
    computed in float64.

    Positive: training on the example raises the target's margin. ``proj_type='identity'`` skips
    the projection (features are the whole gradients, ``proj_dim`` unused).
    """
    AttributionTask, TRAKAttributor = _dattri()
    if not checkpoints:
        raise UserError("TRAK needs at least one trained model (trak.models)")
    if proj_type != "identity" and proj_dim >= len(train_x) and regularization == 0:
        # Phi^T Phi is proj_dim x proj_dim of rank at most N: singular without regularization.
        raise UserError(f"trak.proj_dim={proj_dim} is not below the {len(train_x)} training examples: Phi^T Phi is "
                        f"singular; lower trak.proj_dim or set trak.regularization > 0")
    # In float64: the kernel Phi^T Phi is ill-conditioned, and solving it in float32 moved the scores
    # of tests/test_trak.py's tiny model by 70% of their scale (float64: 4e-11).
    model = copy.deepcopy(model).double()
    checkpoints = [{k: v.double() if v.is_floating_point() else v for k, v in c.items()} for c in checkpoints]
    train_x, target_x = train_x.double(), target_x.double()
    train_output, target_margin, probability = _output_functions(model)
    task = AttributionTask(loss_func=train_output, model=model, checkpoints=checkpoints,
                           target_func=target_margin)
    # dattri updates its module-level default projector settings in place: pass every key, so no
    # setting leaks in from an earlier attributor.
    projector = {"proj_dim": proj_dim, "proj_max_batch_size": 32, "proj_seed": seed, "device": "cpu",
                 "proj_type": proj_type}
    attributor = TRAKAttributor(task, probability, projector_kwargs=projector, regularization=regularization)

    def loader(x, y):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)

    with _bars(progress):
        attributor.cache(loader(train_x, train_y))
        return attributor.attribute(loader(target_x, target_y)).T.double().cpu().numpy()


@contextmanager
def _bars(shown: bool):
    """dattri's progress bars, shown or not: it offers no switch, so its module's ``tqdm`` is
    swapped for a silent one while it runs."""
    import dattri.algorithm.trak as module

    bar = module.tqdm
    if not shown:
        module.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar


def player_weights(scores: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """``[T, n]``: each player's score, the sum of its examples' scores (``scores [T, N]``;
    ``groups [N]``: each training example's player)."""
    groups = np.asarray(groups, dtype=np.int64)
    if len(groups) != scores.shape[1] or len(groups) and not 0 <= groups.min() <= groups.max() < n:
        raise UserError(f"{len(groups)} player ids in 0..{n - 1} are needed for {scores.shape[1]} scored examples")
    to_players = sparse.csr_matrix((np.ones(len(groups)), (np.arange(len(groups)), groups)), shape=(len(groups), n))
    return np.asarray((to_players.T @ scores.T).T)


def predict(masks, weights: np.ndarray) -> np.ndarray:
    """``[m, T]``: ``sum_{i kept} weights[t, i]`` for packed masks ``[m, n]`` (read in chunks)."""
    return np.concatenate([masks[rows].unpack().astype(np.float64) @ weights.T
                           for rows in (slice(a, a + _CHUNK) for a in range(0, max(len(masks), 1), _CHUNK))])


def calibrate(raw: np.ndarray, margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the least-squares ``(slope, intercept)`` of ``margins [m, T]`` on ``raw [m, T]``;
    a column whose raw prediction does not vary gets slope 0 (its mean margin)."""
    dx, dy = raw - raw.mean(0), margins - margins.mean(0)
    var = (dx**2).sum(0)
    slope = np.divide((dx * dy).sum(0), var, out=np.zeros(raw.shape[1]), where=var > 0)
    return slope, margins.mean(0) - slope * raw.mean(0)


def retrain(run, ready, rows) -> list[dict]:
    """State dicts of the sweep's models at layout ``rows``, retrained with their masks and seeds
    (``run``: the :class:`~datamodels.sweep.stage.SweepRun`, ``ready``: its fit-ready layout)."""
    checkpoints = []
    for row in rows:
        mask = ready.masks[[row]].unpack()[0]
        net, _ = train_network(run.build, run.splits, kept_examples(mask, run.groups), int(ready.seed[row]),
                               run.train_cfg, run.loader)
        checkpoints.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return checkpoints


def run_weights(run, checkpoints: list[dict], settings: TrakSettings, progress: bool = True) -> np.ndarray:
    """Uncalibrated player weights ``[T, n]`` of a sweep's targets from ``checkpoints``."""
    splits = run.splits
    scores = trak_scores(run.build(), checkpoints, splits.normalise(splits.train_images), splits.train_y,
                         splits.target_x, splits.target_y, settings.proj_dim, settings.proj_type, settings.seed,
                         settings.regularization, settings.batch_size, progress)
    return player_weights(scores, run.groups, run.n)


def run_trak(run_dir, settings: TrakSettings, *, progress: bool = True, force: bool = False) -> StageResult:
    """The TRAK fit of a run folder into its fit tables (module docstring): the stage's
    :class:`~datamodels.run.stage_result.StageResult` (``outputs``: the fitted ``interactions``
    and ``metrics``), up to date when the layout and settings are those of its last run."""
    from ..sweep.run_data import RunData  # it imports the sweep (torch data): only when called

    _dattri()  # a missing extra fails before any training
    folder = RunFolder(run_dir)
    ready = open_fit_ready(run_dir, progress=progress)
    inputs = StageInputs(folder.fit_record(ENGINE), {"layout": ready.path / MANIFEST}, asdict(settings))
    if not force and inputs.unchanged(folder.fit_tables()):
        return StageResult("trak", up_to_date=True)
    run = RunData.open(run_dir).sweep_run
    if run is None:
        raise UserError(f"TRAK retrains models on the run's data, and {run_dir} has no dataset linked")
    held = heldout_split(ready.mask_id, settings.heldout_fraction, settings.split_seed)
    fitting = np.flatnonzero(~held)
    if settings.models > len(fitting):
        raise UserError(f"trak.models={settings.models}: the fit split has {len(fitting)} models")
    start = time.perf_counter()
    checkpoints = retrain(run, ready, fitting[:settings.models])
    raw_weights = run_weights(run, checkpoints, settings, progress)
    seconds = time.perf_counter() - start
    margins = np.asarray(ready.target_margins, dtype=np.float64).T  # [m, T]
    raw = predict(ready.masks, raw_weights)
    slope, intercept = calibrate(raw[fitting], margins[fitting])
    pred = raw * slope + intercept
    interactions, metrics = fit_tables(raw_weights * slope[:, None], pred, margins, held, ready.mask_id, slope,
                                       settings.models, seconds)
    meta = tables_meta(ready.meta, None, ENGINE, asdict(settings), settings.heldout_fraction, settings.split_seed)
    paths = save_fit(folder, None, interactions, metrics, meta)
    inputs.save()
    return StageResult("trak", paths, outputs={"interactions": interactions, "metrics": metrics})


def fit_tables(weights: np.ndarray, pred: np.ndarray, margins: np.ndarray, held: np.ndarray, mask_id,
               slope: np.ndarray, models: int, seconds: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fit stage's two tables for TRAK's calibrated weights ``[T, n]``, predictions and margins
    ``[m, T]``: order-1 terms of every target, and its held-out metrics (the columns
    :data:`datamodels.fit.outputs.METRIC_COLUMNS`, plus ``slope``)."""
    T, n = weights.shape
    tables, rows = [], []
    for t in range(T):
        y = margins[:, t]
        score, ceiling = r2(y[held], pred[held, t]), noise_ceiling(y, mask_id)
        rows.append((t, ENGINE, score, spearman(y[held], pred[held, t]), ceiling, score / ceiling, models,
                     seconds / T, n, 0, False, 0, slope[t]))
        table = interaction_table({(i,): w for i, w in enumerate(weights[t]) if w != 0})
        tables.append(table.assign(target=t, engine=ENGINE))
    metrics = pd.DataFrame(rows, columns=[*METRIC_COLUMNS, "slope"])
    interactions = pd.concat(tables, ignore_index=True)[list(INTERACTION_COLUMNS)]
    return interactions, metrics
