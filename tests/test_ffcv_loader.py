import importlib.util
import sys

import numpy as np
import pytest
import torch

from conftest import TINY, compose_config
from datamodels.sweep.data import prepare
from datamodels.sweep.ffcv_loader import import_ffcv
from datamodels.sweep.loaders import ResidentLoader, to_device
from datamodels.sweep.masks import MaskDesign
from datamodels.sweep.models import build_model
from datamodels.store.shards import load_sweep
from datamodels.sweep.stage import SweepRun
from datamodels.sweep.train import TrainConfig, train_model


def test_a_missing_ffcv_names_the_make_target(monkeypatch):
    monkeypatch.setitem(sys.modules, "ffcv", None)  # what an environment without FFCV imports
    with pytest.raises(ImportError, match=r"loader=ffcv needs FFCV.*run `make install-ffcv`"):
        import_ffcv()


needs_ffcv = pytest.mark.skipif(importlib.util.find_spec("ffcv") is None,
                                reason="FFCV is an optional extra, not installed here: `make install-ffcv` "
                                       "(CI installs it)")


@pytest.fixture(scope="module")
def digits():
    data = prepare("digits", train=300, target=30, holdout=None)
    return data, to_device(data)


@needs_ffcv
@pytest.mark.slow  # FFCV's writer and loader start worker processes
def test_both_loaders_give_the_same_examples_every_epoch(digits, tmp_path):
    from datamodels.sweep.ffcv_loader import FFCVLoader

    data, splits = digits
    ffcv, resident = FFCVLoader(splits, data, tmp_path), ResidentLoader(splits)
    cfg = TrainConfig(epochs=3, batch_size=32)
    for seed, kept in [(1, np.arange(0, 300, 2)), (2, np.arange(1, 300, 2))]:
        stream = list(ffcv.stream(kept, seed, cfg))
        index, _ = resident.plan(kept, seed, cfg)
        assert len(stream) == len(index) == 15 and all(len(s[0]) == 32 for s in stream)  # ceil(3 * 150 / 32)
        positions = torch.cat([s[2] for s in stream])
        for epoch in range(2):  # the third epoch is cut short by the last full batch
            part = slice(epoch * len(kept), (epoch + 1) * len(kept))
            assert sorted(positions[part].tolist()) == sorted(index.flatten()[part].tolist()) == kept.tolist()
        images = torch.cat([s[0] for s in stream]).permute(0, 3, 1, 2)
        assert torch.equal(images, splits.train_images[positions])  # the .beton holds the split's pixels
        assert torch.equal(torch.cat([s[1] for s in stream]).long(), splits.train_y[positions])
    beton = ffcv.path
    written = beton.stat().st_mtime_ns
    assert FFCVLoader(splits, data, tmp_path).path == beton and beton.stat().st_mtime_ns == written  # written once


@needs_ffcv
@pytest.mark.slow
def test_models_trained_through_either_loader_reach_the_same_accuracy(digits, tmp_path):
    from datamodels.sweep.ffcv_loader import FFCVLoader

    data, splits = digits
    torch.set_num_threads(1)
    loaders = {"resident": ResidentLoader(splits), "ffcv": FFCVLoader(splits, data, tmp_path)}
    design = MaskDesign("bernoulli", 300, 0.5, seed=0)
    cfg = TrainConfig(batch_size=32)

    def build():
        return build_model("small_cnn", 1, 10, width=8)

    accuracy = {name: np.array([train_model(build, splits, np.flatnonzero(design.mask(j)), j, cfg, loader)
                                .holdout_accuracy for j in range(6)]) for name, loader in loaders.items()}
    assert min(a.min() for a in accuracy.values()) > 0.8, accuracy
    assert abs(accuracy["resident"].mean() - accuracy["ffcv"].mean()) < 0.03, accuracy


@needs_ffcv
@pytest.mark.slow  # FFCV's writer and loader start worker processes
def test_a_sweep_through_ffcv_writes_its_beton_and_a_shard(tmp_path):
    run = SweepRun(compose_config(TINY + ["loader=ffcv"]), tmp_path)
    run.run_shard(0, progress=False)
    assert load_sweep(tmp_path).margins.shape == (3, 20)
    assert [p.name for p in (tmp_path / "data").iterdir()] == [f"digits-{run.data.fingerprint}-train.beton"]
