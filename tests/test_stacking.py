import numpy as np
import pytest
import torch

from conftest import TINY, compose_config
from datamodels.data import prepare
from datamodels.loaders import to_device
from datamodels.masks import MaskDesign
from datamodels.models import build_model
from datamodels.stacking import stack_networks
from datamodels.store import load_sweep
from datamodels.sweep import SweepRun, config_hash
from datamodels.train import TrainConfig, train_model, train_models


@pytest.mark.parametrize("name,options,shape", [("small_cnn", {"width": 4}, (1, 8, 8)),
                                                ("resnet9", {"width": 0.0625}, (3, 16, 16))])
def test_a_stacked_network_computes_each_network(name, options, shape):
    torch.manual_seed(0)
    nets = [build_model(name, shape[0], 10, **options) for _ in range(3)]
    stacked = stack_networks(nets)
    x = torch.randn(3, 5, *shape)
    for mode in ("train", "eval"):
        for net in nets + [stacked]:
            getattr(net, mode)()
        out = stacked(x.transpose(0, 1).reshape(5, 3 * shape[0], *shape[1:]))
        assert out.shape == (5, 3, 10)
        for k, net in enumerate(nets):
            torch.testing.assert_close(out[:, k], net(x[k]), rtol=1e-4, atol=1e-5)


def test_stacking_refuses_layers_it_cannot_split():
    with pytest.raises(TypeError, match="cannot stack LayerNorm layers"):
        stack_networks([torch.nn.Sequential(torch.nn.LayerNorm(4)) for _ in range(2)])


def test_a_model_trained_in_a_stack_equals_the_same_model_trained_alone():
    splits = to_device(prepare("digits", train=200, target=30, holdout=100))
    torch.set_num_threads(1)
    design = MaskDesign("bernoulli", 200, 0.5, seed=0)
    kept = [np.flatnonzero(design.mask(j)) for j in range(3)]  # different sizes: different step counts
    assert len({len(k) for k in kept}) == 3
    cfg = TrainConfig(epochs=2, batch_size=16, flip=True, translate=1, cutout=2)

    def build():
        return build_model("small_cnn", 1, 10, width=4)

    alone = [train_model(build, splits, k, 10 + j, cfg) for j, k in enumerate(kept)]
    stacked = train_models(build, splits, kept, [10, 11, 12], cfg)
    for a, s in zip(alone, stacked):
        np.testing.assert_allclose(s.margins, a.margins, rtol=1e-4, atol=1e-4)  # rounding only
        assert s.holdout_accuracy == a.holdout_accuracy


@pytest.mark.slow
def test_models_per_pass_gives_the_accuracy_of_one_at_a_time_training():
    splits = to_device(prepare("digits", train=1000, target=50, holdout=None))
    torch.set_num_threads(1)
    design = MaskDesign("bernoulli", 1000, 0.5, seed=1)
    kept = [np.flatnonzero(design.mask(j)) for j in range(8)]
    cfg = TrainConfig()  # the digits recipe

    def build():
        return build_model("small_cnn", 1, 10)

    one = np.array([train_model(build, splits, k, j, cfg).holdout_accuracy for j, k in enumerate(kept)])
    four = np.array([r.holdout_accuracy for half in (0, 4)
                     for r in train_models(build, splits, kept[half:half + 4], list(range(half, half + 4)), cfg)])
    assert one.min() > 0.9 and four.min() > 0.9, (one, four)
    assert abs(one.mean() - four.mean()) < 0.01, (one, four)


def test_models_per_pass_enters_the_config_hash_and_needs_the_resident_loader(tmp_path):
    assert config_hash(compose_config(TINY)) != config_hash(compose_config(TINY + ["sweep.models_per_pass=3"]))
    assert config_hash(compose_config(TINY)) != config_hash(compose_config(TINY + ["loader=ffcv"]))
    with pytest.raises(ValueError, match="sweep.models_per_pass=2 stacks models over the resident loader"):
        SweepRun(compose_config(TINY + ["loader=ffcv", "sweep.models_per_pass=2"]), tmp_path)
    with pytest.raises(ValueError, match="sweep.models_per_pass must be >= 1"):
        SweepRun(compose_config(TINY + ["sweep.models_per_pass=0"]), tmp_path)


def test_a_sweep_in_passes_of_k_models_writes_the_same_store(tmp_path):
    one = SweepRun(compose_config(TINY), tmp_path / "one")
    two = SweepRun(compose_config(TINY + ["sweep.models_per_pass=2"]), tmp_path / "two")
    for run in (one, two):
        for shard in range(run.num_shards):
            run.run_shard(shard, progress=False)
    a, b = load_sweep(tmp_path / "one" / "shards"), load_sweep(tmp_path / "two" / "shards")
    np.testing.assert_array_equal(a.model_index, b.model_index)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.margins, b.margins, rtol=1e-3, atol=1e-3)


def test_bf16_trains_alone_and_stacked_and_fp32_is_untouched(tmp_path):
    """train.precision=bf16 (autocast) learns as float32 does, alone and stacked; float32 is
    bit-identical to training without autocast, and an old sweep's identity does not move."""
    splits = to_device(prepare("digits", train=300, target=40, holdout=200))
    torch.set_num_threads(1)
    design = MaskDesign("bernoulli", 300, 0.5, seed=2)
    kept = [np.flatnonzero(design.mask(j)) for j in range(2)]

    def build():
        return build_model("small_cnn", 1, 10, width=8)

    fp32, bf16 = TrainConfig(epochs=6, batch_size=32), TrainConfig(epochs=6, batch_size=32, precision="bf16")
    a, b = train_model(build, splits, kept[0], 7, fp32), train_model(build, splits, kept[0], 7, bf16)
    stacked = train_models(build, splits, kept, [7, 8], bf16)
    assert a.holdout_accuracy > 0.8 and b.holdout_accuracy > 0.8 and stacked[0].holdout_accuracy > 0.8
    assert abs(a.holdout_accuracy - b.holdout_accuracy) < 0.05
    assert not np.array_equal(a.margins, b.margins)  # bfloat16 forward passes: other rounding
    # still the same model, by far nearer its float32 twin (here 0.89) than another seed's (0.25)
    other_seed = train_model(build, splits, kept[0], 8, fp32)
    corr = [np.corrcoef(a.margins, m)[0, 1] for m in (b.margins, stacked[0].margins, other_seed.margins)]
    assert min(corr[:2]) > corr[2] + 0.3 and b.margins.dtype == np.float32, corr
    torch.manual_seed(7)  # float32 with autocast off is the plain loop: the same margins bit for bit
    assert np.array_equal(train_model(build, splits, kept[0], 7, fp32).margins, a.margins)
    plain = [k for k in TINY if not k.startswith("train.precision")]
    assert config_hash(compose_config(plain)) == config_hash(compose_config(plain + ["train.precision=fp32"]))
    legacy = compose_config(plain)
    del legacy["train"]["precision"]  # a sweep written before the setting existed
    assert config_hash(legacy) == config_hash(compose_config(plain))
    assert config_hash(compose_config(plain + ["train.precision=bf16"])) != config_hash(legacy)
    with pytest.raises(ValueError, match="train.precision must be one of fp32, bf16"):
        SweepRun(compose_config(TINY + ["train.precision=fp16"]), tmp_path)
