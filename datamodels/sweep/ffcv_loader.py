"""The FFCV loader (``loader=ffcv``): the train split in a ``.beton`` file, read by FFCV.

FFCV is an optional extra (``make install-ffcv``): it builds from source against Debian's
OpenCV and libjpeg-turbo. It is imported only when this loader is chosen.

- The split is written once per run folder and dataset fingerprint, to
  ``<run_dir>/data/<dataset>-<fingerprint>-train.beton``, with FFCV's ``DatasetWriter``: the raw
  uint8 images (``NDArrayField``), their labels and their positions in the split (``IntField``),
  under a temporary name then renamed, so parallel shard processes never read half a file.
- A model reads its kept examples with ``Loader(indices=kept, order=RANDOM)`` seeded by its
  training seed. The epochs are laid end to end and cut into full batches, as the resident
  loader does, so both give the same number of steps and the same set of examples every epoch
  (in FFCV's own order). Normalisation and augmentation (drawn from the same generator as the
  resident loader's) are applied to the whole batch in torch after loading.
- One FFCV ``Loader`` per process is re-pointed at each model's indices and seed: building a
  loader compiles its pipeline with numba, about 10 s, paid once per process on its first epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..run.folder import RunFolder
from .data import PreparedData
from .loaders import ResidentSplits, augment, draw_augmentation, epochs_spanned, step_params, total_steps

INSTALL_HINT = ("loader=ffcv needs FFCV, an optional extra: run `make install-ffcv` (it installs Debian's "
                "pkg-config, libopencv-dev and libturbojpeg0-dev when missing, then pip-installs '.[ffcv]' "
                "into .venv), or use loader=resident")


def import_ffcv():
    """The FFCV modules this loader uses; a clear error when FFCV is not installed."""
    try:
        from ffcv.fields import IntField, NDArrayField
        from ffcv.fields.decoders import IntDecoder, NDArrayDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import ToTensor
        from ffcv.writer import DatasetWriter
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error
    return {"IntField": IntField, "NDArrayField": NDArrayField, "IntDecoder": IntDecoder,
            "NDArrayDecoder": NDArrayDecoder, "Loader": Loader, "OrderOption": OrderOption,
            "ToTensor": ToTensor, "DatasetWriter": DatasetWriter}


class _TrainSplit:
    """The train split as FFCV's writer reads it: ``(image, label, position)`` by position."""

    def __init__(self, data: PreparedData):
        self.images, self.labels = data.images("train"), data.labels("train")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


def beton_path(data: PreparedData, run_dir: str | os.PathLike) -> Path:
    return RunFolder(run_dir).beton(data.name, data.fingerprint)


def write_beton(data: PreparedData, run_dir: str | os.PathLike) -> Path:
    """Write the train split's ``.beton`` unless it is there; return its path."""
    path = beton_path(data, run_dir)
    if path.exists():
        return path
    ffcv = import_ffcv()
    path.parent.mkdir(parents=True, exist_ok=True)
    images = data.images("train")
    fields = {"image": ffcv["NDArrayField"](np.dtype("uint8"), images.shape[1:]),
              "label": ffcv["IntField"](), "position": ffcv["IntField"]()}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        ffcv["DatasetWriter"](str(tmp), fields, num_workers=1).from_indexed_dataset(_TrainSplit(data))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class FFCVLoader:
    """Batches of one model read from the ``.beton`` by FFCV (see the module docstring)."""

    def __init__(self, splits: ResidentSplits, data: PreparedData, run_dir: str | os.PathLike, num_workers: int = 1):
        if int(num_workers) < 1:
            raise ValueError(f"loader.num_workers must be >= 1, got {num_workers}")
        self.ffcv = import_ffcv()
        self.splits = splits
        self.path = write_beton(data, run_dir)
        self.num_workers = int(num_workers)
        self.shape = tuple(data.images("train").shape[1:3])
        self._loader = None
        self._batch_size = None

    def _pointed_at(self, kept: np.ndarray, seed: int, batch_size: int):
        """The process's FFCV loader, re-pointed at ``kept`` with a fresh random order for ``seed``."""
        indices = np.sort(np.asarray(kept, dtype=np.int64))
        ffcv_seed = seed % 2**31
        if self._loader is None or self._batch_size != batch_size:
            to_tensor = self.ffcv["ToTensor"]
            self._loader = self.ffcv["Loader"](
                str(self.path), batch_size=batch_size, num_workers=self.num_workers,
                order=self.ffcv["OrderOption"].RANDOM, indices=indices, seed=ffcv_seed, drop_last=False,
                os_cache=True, pipelines={"image": [self.ffcv["NDArrayDecoder"](), to_tensor()],
                                          "label": [self.ffcv["IntDecoder"](), to_tensor()],
                                          "position": [self.ffcv["IntDecoder"](), to_tensor()]})
            self._batch_size = batch_size
        else:
            loader = self._loader
            # what Loader.__init__ sets from these arguments, without recompiling its pipeline
            loader.indices, loader.seed, loader.next_epoch = indices, ffcv_seed, 0
            loader.traversal_order = type(loader.traversal_order)(loader)
            loader.first_traversal_order = loader.next_traversal_order()  # what len(loader) counts
        return self._loader

    def stream(self, kept: np.ndarray, seed: int, cfg) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """uint8 images ``[B, H, W, C]``, labels and split positions of every full batch of a model."""
        steps, b = total_steps(len(kept), cfg), cfg.batch_size
        loader = self._pointed_at(kept, seed, b)
        pending = None
        yielded = 0
        for _ in range(epochs_spanned(len(kept), steps, b)):
            for images, labels, positions in loader:
                batch = images, labels.view(-1), positions.view(-1)  # [b, 1] int fields, even when b = 1
                # FFCV reuses its batch buffers: the concatenation copies them out
                pending = [torch.cat([p, t]) for p, t in zip(pending, batch)] if pending else list(batch)
                while len(pending[0]) >= b and yielded < steps:
                    yield tuple(t[:b] for t in pending)
                    pending = [t[b:] for t in pending]
                    yielded += 1
        if yielded != steps:
            raise RuntimeError(f"FFCV gave {yielded} of {steps} batches for {len(kept)} kept examples")

    def batches(self, kept: np.ndarray, seed: int, cfg) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised, augmented ``(x, y)`` of every step of one model."""
        params = draw_augmentation(cfg, total_steps(len(kept), cfg), cfg.batch_size, self.shape,
                                   torch.Generator().manual_seed(seed))
        device = self.splits.train_images.device
        for step, (images, labels, _) in enumerate(self.stream(kept, seed, cfg)):
            x = self.splits.normalise(images.to(device).permute(0, 3, 1, 2))
            yield augment(x, step_params(params, step), cfg), labels.to(device=device, dtype=torch.long)
