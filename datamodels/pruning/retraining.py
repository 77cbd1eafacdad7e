"""What needs models trained on the run's data: judging keep-sets, and EL2N difficulties.

Evaluation follows the pruning literature: retrain on each keep-set under a **fixed number of
SGD steps** (that of training on the full set), so smaller sets get more epochs; the same seeds
for every method; accuracy on the **holdout** split only (never on the targets that drove the
attribution).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..processes import check_main_guard, leave_with_parent
from ..sweep.loaders import total_steps
from ..sweep.masks import kept_examples
from ..sweep.train import train_model, train_network
from .baselines import BASELINES
from .quotas import PruningError


def full_data_steps(run) -> int:
    """SGD steps of the recipe on the whole training set: the budget every keep-set gets."""
    return total_steps(len(run.groups), run.train_cfg)


def retraining_jobs(keep: pd.DataFrame, seeds: int) -> list[tuple[int, int]]:
    """``(row of keep, training seed)`` pairs: every seed for a deterministic method's keep-set;
    for a randomised one, draw ``d`` with seed ``d mod seeds`` (with as many draws as seeds, each
    draw its own seed), so that its spread includes the draw's and every seed is paired."""
    if seeds < 1:
        raise PruningError(f"evaluation needs at least one seed, got {seeds}")
    jobs = []
    for (method, fraction), rows in keep.groupby(["method", "fraction"], sort=False):
        draws = sorted(rows["draw"])
        if method in BASELINES and BASELINES[method].randomised:
            if draws != list(range(len(draws))) or len(draws) < seeds:
                raise PruningError(f"the keep-sets hold {len(draws)} draws of {method} at fraction {fraction}, but "
                                   f"prune.eval_seeds={seeds} trains draw d with seed d mod {seeds} and needs a draw "
                                   f"for every seed: rerun jobs/prune.py with prune.draws >= {seeds}")
            jobs += [(i, int(d) % seeds) for i, d in zip(rows.index, rows["draw"])]
        else:
            jobs += [(rows.index[0], s) for s in range(seeds)]
    return jobs


_RUN = None


def _init_retraining_worker(run_dir: str, threads: int) -> None:
    global _RUN
    from ..sweep.stage import SweepRun

    torch.set_num_threads(threads)
    _RUN = SweepRun.open(run_dir)
    leave_with_parent()


def _retrain(players: list[int], seed: int, steps: int) -> float:
    mask = np.zeros(_RUN.n, dtype=bool)
    mask[players] = True
    cfg = replace(_RUN.train_cfg, steps=steps)
    return train_model(_RUN.build, _RUN.splits, kept_examples(mask, _RUN.groups), seed, cfg, _RUN.loader).holdout_accuracy


def evaluate_keep_sets(run, keep: pd.DataFrame, seeds: int = 5, workers: int = 1, progress: bool = True,
                       threads: int = 1) -> pd.DataFrame:
    """Retrain every keep-set under the full-data step budget (:func:`retraining_jobs` says with
    which seeds) in ``workers`` processes; one row per model with its holdout accuracy."""
    jobs = retraining_jobs(keep, seeds)
    check_main_guard("retraining keep-sets")
    steps = full_data_steps(run)
    context = get_context("spawn")  # fork would copy torch's thread pools
    # The same keep-set and seed give the same model (every method keeps everything at fraction 1):
    # trained once.
    unique = {(tuple(keep.at[i, "players"]), seed): None for i, seed in jobs}
    with ProcessPoolExecutor(max(1, workers), context, _init_retraining_worker, (str(run.run_dir), threads)) as pool:
        futures = {key: pool.submit(_retrain, list(key[0]), key[1], steps) for key in unique}
        for key, future in tqdm(futures.items(), desc="retraining keep-sets", disable=not progress):
            unique[key] = future.result()
    accuracies = [unique[(tuple(keep.at[i, "players"]), seed)] for i, seed in jobs]
    return pd.DataFrame([{"method": keep.at[i, "method"], "fraction": keep.at[i, "fraction"], "draw": keep.at[i, "draw"],
                          "size": keep.at[i, "size"], "seed": seed, "steps": steps, "holdout_acc": acc}
                         for (i, seed), acc in zip(jobs, accuracies)])


def el2n_scores(run, num_seeds: int = 3, epochs: int = 2) -> np.ndarray:
    """EL2N of every training example after ``epochs`` epochs of the sweep's recipe on the full
    training set, averaged over ``num_seeds`` seeds; aggregated per player by the mean.

    ``run`` is a :class:`datamodels.sweep.stage.SweepRun` (data, recipe, model and players).
    """
    splits = run.splits
    cfg = replace(run.train_cfg, epochs=epochs, steps=None)
    everything = np.arange(len(splits.train_y))
    scores = torch.zeros(len(everything))
    for s in range(num_seeds):
        model, _ = train_network(run.build, splits, everything, seed=10_000 + s, cfg=cfg, loader=run.loader)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(splits.normalise(chunk))
                                for chunk in splits.train_images.split(cfg.eval_batch_size)])
        error = logits.softmax(1) - torch.nn.functional.one_hot(splits.train_y, logits.shape[1]).float()
        scores += error.norm(dim=1).cpu()
    per_example = (scores / num_seeds).numpy()
    return np.bincount(run.groups, weights=per_example) / np.bincount(run.groups)


