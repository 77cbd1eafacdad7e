import numpy as np
import pytest
import torch

from conftest import TINY, compose_config
from datamodels.sweep.data import prepare
from datamodels.sweep.loaders import to_device
from datamodels.sweep.masks import MaskDesign
from datamodels.sweep.models import build_model
from datamodels.sweep.stacking import stack_networks
from datamodels.store.shards import load_sweep
from datamodels.sweep.stage import SweepRun, config_hash
from datamodels.sweep.train import TrainConfig, train_model, train_models


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


def test_models_per_pass_is_a_launch_setting_and_needs_the_resident_loader(tmp_path):
    # a model trained in a stack is the model trained alone, up to rounding (tests above): K is how
    # a sweep is launched, not what it computes, so it leaves the hash as device and compile do
    assert config_hash(compose_config(TINY)) == config_hash(compose_config(TINY + ["sweep.models_per_pass=3"]))
    assert config_hash(compose_config(TINY)) != config_hash(compose_config(TINY + ["loader=ffcv"]))
    with pytest.raises(ValueError, match="sweep.models_per_pass=2 stacks models over the resident loader"):
        SweepRun(compose_config(TINY + ["loader=ffcv", "sweep.models_per_pass=2"]), tmp_path)
    with pytest.raises(ValueError, match="sweep.models_per_pass=0 must be a positive integer"):
        SweepRun(compose_config(TINY + ["sweep.models_per_pass=0"]), tmp_path)


def test_a_sweep_in_passes_of_k_models_writes_the_same_store(tmp_path):
    one = SweepRun(compose_config(TINY), tmp_path / "one")
    two = SweepRun(compose_config(TINY + ["sweep.models_per_pass=2"]), tmp_path / "two")
    for run in (one, two):
        for shard in range(run.num_shards):
            run.run_shard(shard, progress=False)
    a, b = load_sweep(tmp_path / "one"), load_sweep(tmp_path / "two")
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


def _hash_before_models_per_pass_was_a_launch_setting(config: dict) -> str:
    """datamodels.run.identity.config_hash as it was when sweep.models_per_pass entered the hash
    (a copy of that code): the hash the run folders of that time recorded."""
    import hashlib
    import json

    from datamodels.run.identity import LATER_DEFAULTS, RUN_SECTIONS

    relevant = {k: config.get(k) for k in RUN_SECTIONS if k != "sweep"}
    for section, defaults in LATER_DEFAULTS.items():
        if isinstance(relevant.get(section), dict):
            relevant[section] = {k: v for k, v in relevant[section].items() if k not in defaults or v != defaults[k]}
    relevant["sweep"] = {k: v for k, v in config["sweep"].items() if k != "shard"}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


@pytest.mark.slow
def test_run_folders_swept_before_keep_their_identity(tmp_path, monkeypatch):
    from conftest import ROOT, run_job
    from datamodels.run.folder import RunFolder

    # K = 1 (every sweep at the default): the hash it recorded is the hash now
    for overrides in (TINY, ["experiment=demo"]):
        config = compose_config(overrides)
        assert config_hash(config) == _hash_before_models_per_pass_was_a_launch_setting(config)
    demo = RunFolder(ROOT / "runs" / "demo")
    if demo.config_json.exists():  # the demo's run folder, if it was made here
        assert config_hash(demo.read_config()) == demo.read_run()["config_hash"]
    # K = 2, swept before: its run.json and shards hold the hash that counted K; it stays readable
    folder = RunFolder(tmp_path / "run")
    monkeypatch.setattr(RunFolder, "config_hash",
                        lambda self, config: _hash_before_models_per_pass_was_a_launch_setting(config))
    old = SweepRun(compose_config(TINY + ["sweep.models_per_pass=2"], run_dir=folder.root), folder.root)
    old.run_shard(0, progress=False)
    monkeypatch.undo()
    recorded = folder.read_run()["config_hash"]
    assert recorded != config_hash(folder.read_config())  # the old hash, not today's
    assert SweepRun.open(folder.root).meta["config_hash"] == recorded
    # resumed with another K, as the README's commands do: the missing shard is trained, the other kept
    proc = run_job("sweep.py", *TINY, f"run_dir={folder.root}", "sweep.models_per_pass=1", "progress=false")
    assert "1 shards written, 1 already present" in proc.stdout
    assert folder.read_run()["config_hash"] == recorded
    assert len(load_sweep(folder.root, require_complete=True).model_index) == 6


@pytest.mark.slow
def test_a_run_folder_is_swept_on_with_another_models_per_pass(tmp_path):
    """python jobs/sweep.py, then python jobs/sweep.py sweep.models_per_pass=8 on the same run_dir:
    the second finds the first's shards and trains only what is missing."""
    from conftest import run_job
    from datamodels.run.folder import RunFolder

    run_dir = tmp_path / "run"
    first = run_job("sweep.py", *TINY, f"run_dir={run_dir}", "sweep.shard=0", "progress=false")
    assert "1 shards written, 0 already present" in first.stdout
    second = run_job("sweep.py", *TINY, f"run_dir={run_dir}", "sweep.models_per_pass=8", "progress=false")
    assert second.returncode == 0 and "1 shards written, 1 already present" in second.stdout
    third = run_job("sweep.py", *TINY, f"run_dir={run_dir}", "sweep.models_per_pass=3", "progress=false")
    assert "0 shards written, 2 already present" in third.stdout
    assert RunFolder(run_dir).read_config()["sweep"]["models_per_pass"] == 1  # as the sweep was first launched
