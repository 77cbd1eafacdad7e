"""Datasets, splits and fingerprints.

Every dataset is read into one in-memory form, :class:`Dataset`: uint8 images ``[N, H, W, C]``,
int64 labels and, where the source has one, its official train/test flag. :func:`prepare`
turns a dataset into a :class:`PreparedData` with three disjoint splits:

- ``train``: the examples the masks switch on and off (the players, or the members of groups);
- ``target``: points whose margins every model logs;
- ``holdout``: points never used for attribution, only to judge (pruned) training sets.

Splits are a deterministic function of the dataset and a seed. The fingerprint hashes the
arrays and the split, so every stage can refuse outputs made from other data.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..tables import file_digest

DATASETS = ("digits", "cifar10", "synthetic")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_CIFAR_RECORD = 1 + 32 * 32 * 3  # label byte, then R, G, B planes of 32x32, row-major


class DataError(UserError):
    """A dataset could not be read, verified or split as configured."""


@dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int64 [N]
    classes: tuple[str, ...]
    is_test: np.ndarray | None = None  # bool [N]: the source's official test split, if any


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset
    splits: dict[str, np.ndarray] = field(repr=False)  # split name -> int64 indices into dataset
    fingerprint: str

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    def images(self, split: str) -> np.ndarray:
        return self.dataset.images[self.splits[split]]

    def labels(self, split: str) -> np.ndarray:
        return self.dataset.labels[self.splits[split]]


# --------------------------------------------------------------------------- readers


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no download)."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    # Pixel values are 0..16; stretch to the 0..255 range every other dataset uses.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return Dataset("digits", images, bunch.target.astype(np.int64), tuple(str(c) for c in range(10)))


def load_synthetic(
    num_images: int = 2000,
    shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    noise: float = 60.0,
    seed: int = 0,
) -> Dataset:
    """Learnable generated images: a smooth random prototype per class plus pixel noise."""
    if num_images < num_classes:
        raise DataError(f"synthetic: num_images={num_images} is smaller than num_classes={num_classes}")
    rng = np.random.default_rng(seed)
    h, w, c = shape
    # Low-frequency prototypes (random 4x4 patterns upsampled) are easy to tell apart by a CNN.
    coarse = rng.uniform(0, 255, size=(num_classes, 4, 4, c))
    protos = np.repeat(np.repeat(coarse, -(-h // 4), axis=1), -(-w // 4), axis=2)[:, :h, :w]
    labels = rng.integers(num_classes, size=num_images)
    images = protos[labels] + rng.normal(0, noise, size=(num_images, h, w, c))
    images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    return Dataset("synthetic", images, labels.astype(np.int64), tuple(f"class{k}" for k in range(num_classes)))


def _fetch_cifar10(root: Path, url: str) -> Path:
    archive = root / CIFAR10_ARCHIVE
    root.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + f".part-{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"cifar10: {archive} is missing and downloading {url} failed ({err}). Copy the binary archive "
            f"there by hand, or point dataset.options.root at a folder that holds it (default: "
            f"$DATAMODELS_DATA/cifar10, else data/cifar10)"
        ) from None  # the network's own traceback says nothing more
    os.replace(tmp, archive)
    return archive


def decode_cifar_records(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR-10 binary records: 1 label byte, then 1,024 bytes each of R, G and B."""
    if len(raw) % _CIFAR_RECORD:
        raise DataError(f"cifar10: {source} holds {len(raw)} bytes, not a whole number of {_CIFAR_RECORD}-byte records")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) > 9:
        raise DataError(f"cifar10: {source} has label {labels.max()} > 9; not a CIFAR-10 binary batch")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(root: str | os.PathLike, md5: str | None = CIFAR10_MD5, download: bool = True,
                 url: str = CIFAR10_URL) -> Dataset:
    """The genuine CIFAR-10 binary archive (``cifar-10-binary.tar.gz``), checksum-verified.

    Read straight from the archive: fixed-size records, so nothing is ever unpickled. The five
    ``data_batch_*.bin`` members form the official train part, ``test_batch.bin`` the test part.
    """
    root = Path(root)
    archive = root / CIFAR10_ARCHIVE
    if not archive.exists():
        if not download:
            raise DataError(f"cifar10: {archive} does not exist and dataset.options.download is false: copy the "
                            f"archive there, or point dataset.options.root at a folder that holds it (default: "
                            f"$DATAMODELS_DATA/cifar10, else data/cifar10)")
        archive = _fetch_cifar10(root, url)
    if md5 is not None and (found := file_digest(archive, "md5")) != md5:
        raise DataError(f"cifar10: {archive} has md5 {found}, expected {md5}: corrupt or not the binary CIFAR-10 archive")
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base.endswith(".bin") and ("data_batch_" in base or base == "test_batch.bin"):
                parts[base] = decode_cifar_records(tar.extractfile(member).read(), f"{archive}:{member.name}")
    expected = [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]
    if missing := [name for name in expected if name not in parts]:
        raise DataError(f"cifar10: {archive} lacks {', '.join(missing)}")
    images = np.concatenate([parts[name][0] for name in expected])
    labels = np.concatenate([parts[name][1] for name in expected])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[-len(parts["test_batch.bin"][1]):] = True
    return Dataset("cifar10", images, labels, CIFAR10_CLASSES, is_test)


def write_cifar10_archive(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, num_test: int) -> str:
    """Write images/labels as a CIFAR-10 binary archive (the genuine layout); returns its md5.

    Used by tests and examples, since the real archive cannot be downloaded everywhere.
    """
    images = np.asarray(images, dtype=np.uint8)
    records = np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None],
                              images.transpose(0, 3, 1, 2).reshape(len(images), -1)], axis=1)
    train, test = records[:-num_test], records[-num_test:]
    batches = {f"data_batch_{k + 1}.bin": chunk for k, chunk in enumerate(np.array_split(train, 5))}
    batches["test_batch.bin"] = test
    with tarfile.open(path, "w:gz") as tar:
        for name, chunk in batches.items():
            payload = chunk.tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return file_digest(path, "md5")


def load_dataset(name: str, **options) -> Dataset:
    """Read a dataset of the registry by name; ``options`` go to its reader."""
    readers = {"digits": load_digits, "cifar10": load_cifar10, "synthetic": load_synthetic}
    if name not in readers:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} (dataset=NAME)")
    try:
        return readers[name](**options)
    except TypeError as err:
        raise DataError(f"dataset.options of dataset={name}: {sorted(options)} are not all its settings ({err})") from err


# --------------------------------------------------------------------------- splits


def make_splits(dataset: Dataset, train: int, target, holdout: int | None, seed: int) -> dict[str, np.ndarray]:
    """Disjoint, seeded splits. Players come from the official train part where there is one,
    targets and holdout from the official test part; ``holdout=None`` takes what is left.

    ``target`` is a count (drawn at random), or a list of positions in the official test part
    (``[0, 5, ...]``: its images in the source's order), as an imported run links its margin
    columns to the test images they were measured on (:mod:`datamodels.sweep.importing`); the holdout
    then is every other test image, which may be none.
    """
    explicit = isinstance(target, (list, tuple, np.ndarray))
    sizes = {"train": train, "target": len(target) if explicit else target}
    for name, size in sizes.items():
        if size is None or size < 1:
            raise DataError(f"dataset.{name} must be at least one example, got {size}")
    rng = np.random.default_rng([seed, 0x5EED])
    if dataset.is_test is None:
        if explicit:
            raise DataError(f"{dataset.name} has no official test part: dataset.target must be a count")
        order = rng.permutation(len(dataset.labels))
        pool_train, pool_eval = order[:train], order[train:]
    else:
        pool_train = rng.permutation(np.flatnonzero(~dataset.is_test))
        pool_eval = rng.permutation(np.flatnonzero(dataset.is_test))
    if explicit:
        test = np.flatnonzero(dataset.is_test)
        chosen = np.asarray(target, dtype=np.int64)
        if chosen.min() < 0 or chosen.max() >= len(test) or np.any(np.diff(chosen) <= 0):
            raise DataError(f"{dataset.name}: dataset.target lists test positions that are not increasing or not "
                            f"in 0..{len(test) - 1}")
        rest = np.delete(test, chosen)
        if train > len(pool_train) or (holdout is not None and not 0 <= holdout <= len(rest)):
            raise DataError(f"{dataset.name}: cannot take dataset.train={train} and dataset.holdout={holdout} beside "
                            f"{len(chosen)} chosen targets from {len(pool_train)} train and {len(test)} test images")
        return {"train": np.sort(pool_train[:train]), "target": test[chosen],
                "holdout": rest if holdout is None else np.sort(rng.permutation(rest)[:holdout])}
    available_holdout = len(pool_eval) - target
    if holdout is None:
        holdout = available_holdout
    if train > len(pool_train) or holdout < 1 or holdout > available_holdout:
        raise DataError(
            f"{dataset.name}: cannot take dataset.train={train}, dataset.target={target}, dataset.holdout={holdout} from "
            f"{len(pool_train)} train-pool and {len(pool_eval)} evaluation-pool images"
        )
    return {
        "train": np.sort(pool_train[:train]),
        "target": np.sort(pool_eval[:target]),
        "holdout": np.sort(pool_eval[target:target + holdout]),
    }


def fingerprint(dataset: Dataset, splits: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(dataset.name.encode())
    for array in (dataset.images, dataset.labels, *(splits[k] for k in ("train", "target", "holdout"))):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def prepare(name: str, train: int, target, holdout: int | None = None, split_seed: int = 0,
            **options) -> PreparedData:
    """Read a dataset and split it: the first stage of the pipeline."""
    dataset = load_dataset(name, **options)
    splits = make_splits(dataset, train, target, holdout, split_seed)
    return PreparedData(dataset, splits, fingerprint(dataset, splits))
