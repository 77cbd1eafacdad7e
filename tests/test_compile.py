"""The ``compile`` setting: torch.compile of the training steps changes rounding, not models,
and trains every model of a process in the same tensors."""

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from conftest import TINY, compose_config
from datamodels.sweep.data import prepare
from datamodels.errors import UserError
from datamodels.sweep.loaders import to_device
from datamodels.sweep.masks import MaskDesign
from datamodels.sweep.models import build_model
from datamodels.sweep.stage import SweepRun, config_hash
from datamodels.sweep.train import TrainConfig, train_model, train_models, train_network


@pytest.mark.slow
def test_compiled_training_gives_the_eager_models_and_compiles_once(tmp_path):
    splits = to_device(prepare("digits", train=200, target=30, holdout=100))
    torch.set_num_threads(1)
    design = MaskDesign("bernoulli", 200, 0.5, seed=3)
    kept = [np.flatnonzero(design.mask(j)) for j in range(3)]
    eager = TrainConfig(epochs=2, batch_size=16, flip=True, translate=1)
    compiled = TrainConfig(epochs=2, batch_size=16, flip=True, translate=1, compile="default")

    def build():
        return build_model("small_cnn", 1, 10, width=4)

    torch._dynamo.reset()
    counters.clear()
    alone = [train_model(build, splits, kept[0], 10, cfg) for cfg in (eager, compiled)]
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1  # the training step was compiled
    kept_network = train_network(build, splits, kept[1], 11, compiled)[0]
    again = train_model(build, splits, kept[1], 11, compiled)  # another model, another mask
    assert counters["stats"]["unique_graphs"] == graphs  # reused, not compiled again
    # the same tensors for every model (CUDA graphs keep their addresses)
    assert [p.data_ptr() for p in kept_network.parameters()] == [
        p.data_ptr() for p in train_network(build, splits, kept[2], 12, compiled)[0].parameters()]
    stacked = [train_models(build, splits, kept, [10, 11, 12], cfg) for cfg in (eager, compiled)]
    for a, b in [alone, *zip(*stacked)]:
        np.testing.assert_allclose(b.margins, a.margins, rtol=1e-4, atol=1e-4)  # fused kernels: rounding only
    np.testing.assert_allclose(again.margins, stacked[1][1].margins, rtol=1e-4, atol=1e-4)
    # nothing of the models before leaks into the next: the same model, after others, bit for bit
    assert np.array_equal(train_model(build, splits, kept[1], 11, compiled).margins, again.margins)
    assert np.array_equal(train_models(build, splits, kept, [10, 11, 12], compiled)[2].margins, stacked[1][2].margins)


def test_compile_is_checked_and_not_part_of_a_runs_identity(tmp_path):
    with pytest.raises(UserError, match="compile must be null or one of default, reduce-overhead"):
        SweepRun(compose_config(TINY + ["compile=fast"]), tmp_path)
    assert config_hash(compose_config(TINY + ["compile=reduce-overhead"])) == config_hash(compose_config(TINY))
    assert SweepRun(compose_config(TINY + ["compile=default"]), tmp_path).train_cfg.compile == "default"
