"""The ablate stage of a run folder (``jobs/ablate.py``): plan a retraining check of a fit, train
it as a child sweep, measure what is complete.

:func:`~datamodels.ablation.planning.plan_ablation` reads the run's fit and chooses the checks
(:mod:`.planning`, :mod:`.design`); :func:`run_ablate` writes the design into
``<run_dir>/ablations/<name>/design/`` (refusing a folder that holds another one), trains the
child sweep's missing shards (all of them in local processes, or the one shard ``ablate.shard``
of a SLURM array), and once every model is there measures the checks (:mod:`.measure`) into
``results/``. The child is an ordinary run folder: ``jobs/status.py`` and ``jobs/collect.py``
take it as ``run_dir``, and re-running resumes it. ``ablate=heldout`` trains nothing: it
measures the fit's pairs on the fit's own held-out models.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..fit.outputs import read_fit_table
from ..interactions import make_engine
from ..processes import check_main_guard, leave_with_parent
from ..run.folder import RunFolder
from ..run.stage_result import StageResult
from ..store.fit_ready import open_fit_ready
from ..store.shards import collect_run, load_sweep
from ..tables import write_atomic, write_frame
from .design import AblationError, exact_pairs
from .figures import ablation_png
from .measure import heldout_pairs, measure_pairs, measure_removals, pair_summary, removal_comparison, removal_summary
from .planning import AblateSettings, Plan, plan_ablation


# ---------------------------------------------------------------------------------------------- the child sweep


def child_config(run_dir, plan: Plan, runtime: dict) -> dict:
    """The child sweep's settings: the run's recorded ones (data, players, model, recipe, loader)
    with the design's masks as a file design; ``runtime`` the job's device, compile and threads."""
    folder = RunFolder(run_dir)
    config = folder.read_config()
    masks_file = folder.ablation_design(plan.settings.folder_name)[0]
    config["sweep"] = {
        "design": "file", "mask_file": str(masks_file.absolute()), "num_models": plan.design.num_models,
        "models_per_shard": plan.settings.models_per_shard, "repeats": plan.design.repeats,
        "seed": plan.settings.seed, "models_per_pass": int(config["sweep"].get("models_per_pass", 1)),
        "alpha": 0.5, "budget": None, "degree": 5, "shard": None,
    }
    return config | runtime


def write_design(folder: RunFolder, plan: Plan) -> None:
    """Put the plan's design in the child folder, or check that the one there is the same."""
    name = plan.settings.folder_name
    masks_path, checks_path, roles_path = folder.ablation_design(name)
    if masks_path.exists():
        with np.load(masks_path) as old:
            same = (plan.design is not None and np.array_equal(old["masks"], plan.design.masks)
                    and np.array_equal(old["seed_groups"], plan.design.seed_groups))
        if not same:
            raise AblationError(f"{folder.ablation_dir(name)} holds another design (other checks, backgrounds or masks "
                                f"than these settings give): it was left untouched; choose ablate.name=OTHER "
                                f"or move that folder away")
        return
    masks_path.parent.mkdir(parents=True, exist_ok=True)
    write_frame(checks_path, plan.checks, {"design": plan.settings.design, "settings": asdict(plan.settings)})
    write_frame(roles_path, plan.design.roles, {"repeats": plan.design.repeats})

    def save(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, masks=plan.design.masks, seed_groups=plan.design.seed_groups)
    write_atomic(masks_path, save)


_CHILD = None


def _init_child_worker(config: dict, child_dir: str) -> None:
    global _CHILD
    import torch

    from ..sweep.stage import SweepRun

    torch.set_num_threads(int(config.get("torch_threads") or 1))
    _CHILD = SweepRun(config, child_dir)
    leave_with_parent()


def _train_child_shard(shard: int) -> str:
    return _CHILD.run_shard(shard, progress=False)


def train_child(config: dict, child_dir: Path, shards: list[int], workers: int, progress: bool) -> list[str]:
    """Train the child sweep's ``shards``: in this process when one worker or one shard is asked
    for (a SLURM array task), else in ``workers`` processes, a whole shard each (resumable)."""
    from ..sweep.stage import SweepRun

    if not shards:
        return []
    run = SweepRun(config, child_dir)
    run.folder.check_sweep(run.meta, config)  # made once, before parallel workers look for it
    if workers == 1 or len(shards) == 1:
        return [run.run_shard(s, progress=progress) for s in shards]
    check_main_guard("training a retraining check")
    with ProcessPoolExecutor(min(workers, len(shards)), get_context("spawn"), _init_child_worker,
                             (config, str(child_dir))) as pool:
        futures = [pool.submit(_train_child_shard, s) for s in shards]
        return [f.result() for f in tqdm(futures, desc="ablation shards", unit="shard", disable=not progress)]


def seconds_per_model(run_dir) -> float | None:
    """The mean training time of a model in the run's sweep (its first shards), for projections."""
    shards = sorted(RunFolder(run_dir).shards.glob("shard-*.parquet"))[:4]
    if not shards:
        return None
    seconds = np.concatenate([pq.read_table(p, columns=["train_seconds"]).column(0).to_numpy() for p in shards])
    return float(np.nanmean(seconds)) if len(seconds) else None


# ---------------------------------------------------------------------------------------------- measuring


def _heldout(run_dir, plan: Plan) -> pd.DataFrame:
    """The plan's pairs on the fit's held-out models (the fit's own split, recorded in its tables)."""
    folder = RunFolder(run_dir)
    engine = plan.settings.fit_engine
    fit_meta = read_fit_table(folder.fit_metrics_file())[1]["engines"].get(engine, {})
    ready = open_fit_ready(run_dir, progress=False)
    held = make_engine(engine).heldout_models(ready.masks, ready.mask_id, fit_meta.get("heldout_fraction", 0.2),
                                            fit_meta.get("split_seed", 0))
    rows = np.flatnonzero(held)
    masks = ready.masks[rows]
    return heldout_pairs(plan.checks, lambda players: masks.columns(players),
                         lambda t: np.asarray(ready.target_margins[t])[rows], plan.settings.fdr)


def measure(run_dir, plan: Plan) -> StageResult:
    """Measure the plan's checks once every model of the child sweep is trained (pending before)."""
    folder = RunFolder(run_dir)
    name = plan.settings.folder_name
    if plan.design is None:
        checks = _heldout(run_dir, plan)
        paired = None
    else:
        child = RunFolder(folder.ablation_dir(name))
        expected, report = collect_run(child.root)
        if len(report.missing):
            return StageResult("ablate", pending=True)
        sweep = load_sweep(child.root, expected=expected, require_complete=True)
        if plan.settings.design == "pairs":
            checks, everywhere = measure_pairs(plan.checks, plan.design.roles, sweep.mask_id, sweep.repeat,
                                               sweep.margins.astype(float), plan.settings.fdr)
            checks["on_targets"] = list(everywhere.astype(np.float32))
            paired = None
        else:
            checks = measure_removals(plan.checks, plan.design.roles, sweep.mask_id, sweep.repeat,
                                      sweep.margins.astype(float))
            paired = removal_comparison(checks) if {"linear", "interactions"} <= set(checks["method"]) else None
    if plan.settings.design == "removal":
        summary = removal_summary(checks, plan.settings.fit_engine)
    else:
        if folder.read_run()["design"] == "exhaustive":  # the truth is in the sweep itself
            ready = open_fit_ready(run_dir, progress=False)
            checks = checks.join(exact_pairs(checks, ready.masks.unpack(), np.asarray(ready.target_margins).T))
        summary = pair_summary(checks)
    checks_path, summary_path, paired_path, figure_path = folder.ablation_results(name)
    written = [write_frame(checks_path, checks, {"design": plan.settings.design, "alpha": plan.alpha,
                                                 "level": plan.level, "settings": asdict(plan.settings)})]
    write_atomic(summary_path, lambda tmp: summary.to_csv(tmp, index=False))
    written.append(summary_path)
    if paired is not None:
        write_atomic(paired_path, lambda tmp: paired.to_csv(tmp, index=False))
        written.append(paired_path)
    png = ablation_png(checks, plan.settings.design)
    write_atomic(figure_path, lambda tmp: tmp.write_bytes(png))
    written.append(figure_path)
    return StageResult("ablate", written, outputs={"checks": checks, "summary": summary, "paired": paired})


def run_ablate(run_dir, settings: AblateSettings, *, progress: bool = True, force: bool = False,
               runtime: dict | None = None, announce=print) -> StageResult:
    """The whole stage (module docstring): its :class:`~datamodels.run.stage_result.StageResult`
    (``outputs``: the measured ``checks``, their ``summary`` and the ``paired`` comparison of
    removal methods, or None), pending while models are still missing (``ablate.shard`` trains one
    shard; the next call without it trains the rest and measures).
    ``runtime``: the child sweep's ``device``, ``compile`` and ``torch_threads``. ``force`` is
    taken for the stages' common call and changes nothing: models already trained are kept, and
    every call measures anew."""
    folder = RunFolder(run_dir)
    plan = plan_ablation(run_dir, settings)
    announce(plan.describe(None if plan.design is None else seconds_per_model(run_dir)))
    if plan.design is not None:
        write_design(folder, plan)
        child_dir = folder.ablation_dir(settings.folder_name)
        config = child_config(run_dir, plan, runtime or {"device": "cpu", "compile": None, "torch_threads": 1})
        shards = -(-plan.design.num_models // settings.models_per_shard)
        if settings.shard is not None:
            if settings.shard >= shards:
                raise AblationError(f"ablate.shard={settings.shard} is outside 0..{shards - 1}")
            todo = [settings.shard]
        else:
            todo = [s for s in range(shards) if not RunFolder(child_dir).shard(s).exists()]
        train_child(config, child_dir, todo, settings.workers, progress)
    return measure(run_dir, plan)
