"""The retraining sweep: for each model index of a shard, its mask, its training, its margins.

A sweep is described by a plain configuration mapping (the ``conf/`` tree composed by Hydra,
or a dict written by hand) with the sections ``dataset``, ``players``, ``model``, ``train``,
``sweep`` and the keys ``device``, ``compile`` and ``torch_threads``; see ``conf/config.yaml`` for every
setting and its default. :class:`SweepRun` turns it into data, players, a mask design and a
training recipe, and :meth:`SweepRun.run_shard` trains one shard and writes its parquet file.

Shards are idempotent: a shard whose file exists and validates is skipped, so re-running a
sweep (after a crash, a pre-emption, or on purpose) redoes only what is missing. Within a
shard every finished model is checkpointed (:meth:`RunFolder.checkpoint`), so a shard killed
mid-way resumes with its first unfinished model. A shard is trained by one process at a time
(:class:`~datamodels.run.claims.ShardClaim`): a second sweep that reaches it while the first
still trains it skips it, saying who holds it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from ..errors import StoreError, UserError
from ..run.claims import ShardClaim
from ..run.folder import RunFolder
from ..run.identity import check_identity, config_hash
from ..settings import Settings
from ..store.shard_file import ModelRecord, read_models, read_shard_meta, run_meta, write_shard
from ..tables import write_atomic
from .data import PreparedData, prepare
from .loaders import ResidentLoader, ResidentSplits, to_device
from .masks import (DESIGNS, MaskDesign, MaskError, alpha_setting, group_players, kept_examples, load_mask_file,
                    training_seed)
from .models import build_model
from .train import TrainConfig, train_model, train_models
from .twins import add_twins

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name!r} was asked for but torch sees no CUDA device; use device=cpu or auto")
    if name == "cuda" and torch.cuda.device_count() > 1:
        # several processes per node, one per GPU (SLURM tasks): each takes its local rank's GPU
        name = f"cuda:{int(os.environ.get('SLURM_LOCALID', 0)) % torch.cuda.device_count()}"
    return torch.device(name)


LOADERS = ("resident", "ffcv")


def make_loader(name: str, splits: ResidentSplits, data: PreparedData | None = None, run_dir=None, **options):
    """The loader called ``name``; ``ffcv`` writes (once) and reads ``<run_dir>/data/*.beton``."""
    if name == "resident":
        if options:
            raise UserError(f"loader=resident takes no options, got {sorted(options)}")
        return ResidentLoader(splits)
    if name == "ffcv":
        from .ffcv_loader import FFCVLoader  # only with the ffcv extra installed

        if data is None or run_dir is None:
            raise ValueError("loader=ffcv needs the prepared data and a run folder to write its .beton in")
        return FFCVLoader(splits, data, run_dir, **options)
    raise UserError(f"unknown loader {name!r}; choose one of {', '.join(LOADERS)}")


# What a run folder's sweep section records that is not a setting: an imported run's source
# (datamodels.sweep.importing).
RECORDED_ONLY = ("source",)


@dataclass
class SweepSettings(Settings):
    """``conf/sweep/default.yaml``; every setting is described there. Built from ``cfg.sweep`` by
    :func:`datamodels.settings.from_section` (unknown keys refused; a key missing from an older
    run folder's ``config.json`` takes its default). ``alpha`` is read by
    :func:`~datamodels.sweep.masks.alpha_setting` and checked by :class:`MaskDesign`."""

    section = "sweep"
    error = MaskError
    design: str = "bernoulli"
    alpha: float | list = 0.5
    num_models: int | None = 1000
    models_per_shard: int = 125
    repeats: int = 1
    seed: int = 0
    mask_file: str | None = None
    budget: int | None = None
    degree: int = 5
    models_per_pass: int = 1
    shard: int | None = None

    def __post_init__(self):
        if self.design not in DESIGNS:
            raise MaskError(f"sweep.design={self.design!r}; choose one of {', '.join(DESIGNS)}")
        self.check_integers(("models_per_shard", "repeats", "budget", "degree", "models_per_pass"), least=1)
        if self.num_models is not None:  # null: every mask of the design
            self.check_integers(("num_models",), least=1)
        self.check_integers(("seed", "shard"), least=0)


class SweepRun:
    """One sweep: its data, players, mask design, recipe and run folder."""

    def __init__(self, config: dict, run_dir: str | os.PathLike):
        self.config = config
        self.settings = settings = SweepSettings.from_config(
            {k: v for k, v in config["sweep"].items() if k not in RECORDED_ONLY})
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.shard_dir = self.folder.shards
        ds = dict(config["dataset"])
        if ds.get("name") == "none":
            raise UserError(f"{self.run_dir} holds no dataset (dataset=none: imported margins without images): "
                            f"this step trains or shows images; import with dataset=cifar10 to link them")
        self.data = prepare(ds.pop("name"), ds.pop("train"), ds.pop("target"), ds.pop("holdout", None),
                            ds.pop("split_seed", 0), **(ds.pop("options", None) or {}))
        if ds:
            raise UserError(f"dataset: unknown settings {sorted(ds)}")
        players = dict(config.get("players") or {"kind": "example"})
        twins = players.pop("twins", None)
        self.groups = group_players(players.pop("kind"), self.data.labels("train"), self.data.images("train"),
                                    **players)
        # known near-duplicates for the duplicates experiment (datamodels.sweep.twins): after the players are formed
        self.twins = None
        if twins:
            if not isinstance(twins, dict) or set(twins) - {"count", "seed", "noise", "shift"}:
                raise UserError(f"players.twins={twins!r} must be a mapping of count, seed, noise, shift "
                                f"(datamodels.sweep.twins)")
            self.data, self.groups, self.twins = add_twins(self.data, self.groups, **twins)
        self.n = int(self.groups.max()) + 1
        self.seed = settings.seed
        masks_from_file, seed_groups = (load_mask_file(settings.mask_file, self.n) if settings.design == "file"
                                        else (None, None))
        self.design = MaskDesign(settings.design, self.n, alpha_setting(settings.alpha), self.seed,
                                 masks_from_file, settings.budget, settings.degree, seed_groups)
        self.repeats = settings.repeats
        self.num_models = self._num_models(settings.num_models)
        self.models_per_shard = settings.models_per_shard
        self.train_cfg = TrainConfig.from_config({**config["train"], "compile": config.get("compile")})
        self.model_options = {k: v for k, v in config["model"].items() if k != "name"}
        build_model(config["model"]["name"], 1, 2, **self.model_options)  # fail now on a bad name or option
        loader = dict(config.get("loader") or {"name": "resident"})
        self.loader_name, self.loader_options = loader.pop("name"), loader
        self.models_per_pass = settings.models_per_pass
        if self.models_per_pass > 1 and self.loader_name != "resident":
            raise UserError(f"sweep.models_per_pass={self.models_per_pass} stacks models over the resident "
                             f"loader's batches; use loader=resident, or models_per_pass=1 with "
                             f"loader={self.loader_name}")
        self.device = resolve_device(config.get("device", "cpu"))
        self.threads = config.get("torch_threads")
        self.meta = run_meta(
            self.data.fingerprint, self.n, len(self.data.splits["target"]), self.design.kind,
            (list(self.design.alpha) if isinstance(self.design.alpha, tuple) else self.design.alpha)
            if self.design.kind in ("bernoulli", "fixed_size", "imported") else None,
            self.seed, self.repeats, self.models_per_shard, self.num_models, self.folder.config_hash(config),
            self.design.budget, self.design.degree, dataset=self.data.name, model=config["model"]["name"],
            players=(config.get("players") or {}).get("kind", "example"))

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> "SweepRun":
        """The sweep of an existing run folder, its data re-created and checked against ``run.json``."""
        folder = RunFolder(run_dir)
        run = cls(folder.read_config(), run_dir)
        check_identity(folder.run_json, folder.read_run(), run.meta)
        return run

    def _num_models(self, requested: int | None) -> int:
        limit = None if self.design.num_masks is None else self.design.num_masks * self.repeats
        if requested is None:
            if limit is None:
                raise UserError(f"sweep.num_models must be set for design={self.design.kind}")
            return limit
        if limit is not None and requested > limit:
            raise UserError(f"sweep.num_models={requested} must lie in 1..{limit} for design="
                             f"{self.design.kind} with n={self.n} and repeats={self.repeats}")
        return requested

    @property
    def num_shards(self) -> int:
        return -(-self.num_models // self.models_per_shard)

    def shard_models(self, shard: int) -> range:
        if not 0 <= shard < self.num_shards:
            raise UserError(f"sweep.shard={shard} is outside 0..{self.num_shards - 1}: {self.num_models} models "
                             f"in shards of {self.models_per_shard}")
        return range(shard * self.models_per_shard, min(self.num_models, (shard + 1) * self.models_per_shard))

    def mask_of(self, model_index: int) -> np.ndarray:
        return self.design.mask(model_index // self.repeats)

    def seed_of(self, model_index: int) -> int:
        return training_seed(self.seed, self.design.seed_index(model_index, self.repeats))

    @cached_property
    def splits(self) -> ResidentSplits:
        return to_device(self.data, self.device)

    @cached_property
    def loader(self):
        return make_loader(self.loader_name, self.splits, self.data, self.run_dir, **self.loader_options)

    def build(self) -> torch.nn.Module:
        return build_model(self.config["model"]["name"], self.splits.in_channels, self.splits.num_classes,
                           **self.model_options)

    def train_one(self, model_index: int) -> ModelRecord:
        mask = self.mask_of(model_index)
        seed = self.seed_of(model_index)
        result = train_model(self.build, self.splits, kept_examples(mask, self.groups), seed, self.train_cfg,
                             self.loader)
        return ModelRecord(model_index, model_index // self.repeats, model_index % self.repeats, seed, mask,
                           result.margins, result.holdout_accuracy, result.seconds, result.timings)

    def train_pass(self, model_indices) -> list[ModelRecord]:
        """The models of one vectorised pass (``sweep.models_per_pass`` of them)."""
        if len(model_indices) == 1:
            return [self.train_one(model_indices[0])]
        masks = [self.mask_of(i) for i in model_indices]
        seeds = [self.seed_of(i) for i in model_indices]
        results = train_models(self.build, self.splits, [kept_examples(m, self.groups) for m in masks], seeds,
                               self.train_cfg)
        return [ModelRecord(i, i // self.repeats, i % self.repeats, seed, mask, r.margins, r.holdout_accuracy,
                            r.seconds, r.timings) for i, seed, mask, r in zip(model_indices, seeds, masks, results)]

    def shard_is_done(self, shard: int) -> bool:
        """True when the shard's file exists and is whole and ours; an error when it is not ours."""
        path = self.folder.shard(shard)
        if not path.exists():
            return False
        check_identity(path, read_shard_meta(path), self.meta)
        found = pq.read_table(path, columns=["model_index"]).column(0).to_numpy()
        if list(found) != list(self.shard_models(shard)):
            raise StoreError(f"{path} holds models {found.min()}..{found.max()} ({len(found)}), expected "
                             f"{self.shard_models(shard)}; it was left untouched")
        return True

    def run_shard(self, shard: int, progress: bool = True, progress_line: int | None = None) -> str:
        """Train and write one shard: ``"written"``, or ``"present"`` when it was already done, or
        ``"claimed"`` when another process is training it (both skipped, nothing touched).

        ``progress_line``: the terminal line of the progress bar, when processes share one.
        """
        models = self.shard_models(shard)
        self.folder.check_sweep(self.meta, self.config)
        if self.twins is not None and not self.folder.twins.exists():
            write_atomic(self.folder.twins, lambda tmp: self.twins.to_csv(tmp, index=False))
        if self.shard_is_done(shard):
            return "present"
        claim = ShardClaim(self.folder, shard)
        try:
            if not claim.acquire():
                log.warning(f"shard {shard}: skipped, {claim.holder} is training it")
                return "claimed"
            return self._train_claimed(shard, models, claim, progress, progress_line)
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (datamodels.cli): the claim is released by now
            done = sum(self.folder.checkpoint(shard, i).exists() for i in models)
            err.detail = (f"shard {shard} was written; run the same command to go on" if self.folder.shard(shard).exists()
                          else f"shard {shard} was not finished ({done} of {len(models)} models checkpointed, kept); "
                               f"its claim is released; run the same command to resume")
            raise

    def _train_claimed(self, shard: int, models: range, claim: ShardClaim, progress: bool,
                       progress_line: int | None) -> str:
        with claim:
            if self.shard_is_done(shard):  # finished by the holder we waited for
                return "present"
            if self.threads:
                torch.set_num_threads(int(self.threads))
            resumed = sum(self.folder.checkpoint(shard, i).exists() for i in models)
            if resumed:
                log.info(f"shard {shard}: resuming, {resumed} of {len(models)} models already checkpointed")
            records = []
            with tqdm(total=len(models), desc=f"shard {shard}", unit="model", disable=not progress,
                      position=progress_line) as bar:
                # Passes keep fixed boundaries, so a resumed shard groups models exactly as a whole run does.
                for start in range(0, len(models), self.models_per_pass):
                    records += self.checkpointed_pass(shard, models[start:start + self.models_per_pass])
                    claim.refresh()
                    bar.update(len(records) - bar.n)
            write_shard(self.folder.shard(shard), records, self.meta | {"shard": shard})
            shutil.rmtree(self.folder.partial(shard))
        return "written"

    def checkpointed_pass(self, shard: int, model_indices) -> list[ModelRecord]:
        """The models of one pass from their checkpoints, or trained and each checkpointed."""
        paths = [self.folder.checkpoint(shard, i) for i in model_indices]
        found = [path for path in paths if path.exists()]
        for path in found:
            check_identity(path, read_shard_meta(path), self.meta)
        if len(found) == len(paths):
            return [read_models(path, self.n)[0] for path in paths]
        records = self.train_pass(model_indices)
        for path, record in zip(paths, records):
            if not path.exists():  # a job killed while checkpointing this pass wrote some of them
                write_shard(path, [record], self.meta | {"shard": shard})
        return records
