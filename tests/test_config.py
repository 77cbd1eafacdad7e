"""Every option of every config group composes, and its values are accepted by the library."""

from pathlib import Path

import pytest
import torch

from conftest import CONF, compose_config
from datamodels.masks import MaskDesign
from datamodels.models import build_model
from datamodels.train import TrainConfig


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["dataset", "players", "model", "train", "loader", "sweep", "fit", "prune",
                                   "curate", "experiment"])
def test_every_group_has_options(group):
    assert options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize("name", options("dataset"))
def test_dataset_options(name):
    ds = compose_config([f"dataset={name}"])["dataset"]
    assert ds["name"] == name and ds["train"] >= 1 and ds["target"] >= 1


@pytest.mark.parametrize("name", [n for n in options("players") if n != "file"])
def test_players_options(name):
    assert compose_config([f"players={name}"])["players"]["kind"] == name


def test_players_file_requires_a_path():
    from omegaconf.errors import MissingMandatoryValue
    with pytest.raises(MissingMandatoryValue, match="path"):
        compose_config(["players=file"])
    assert compose_config(["players=file", "players.path=groups.npy"])["players"]["path"] == "groups.npy"


@pytest.mark.parametrize("name", options("model"))
def test_model_options_build(name):
    model_cfg = compose_config([f"model={name}"])["model"]
    channels = 1 if name == "small_cnn" else 3
    net = build_model(model_cfg.pop("name"), channels, 10, **model_cfg)
    size = 8 if name == "small_cnn" else 32
    assert net(torch.zeros(2, channels, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", options("train"))
def test_train_options(name):
    TrainConfig(**compose_config([f"train={name}"])["train"])


@pytest.mark.parametrize("name", options("loader"))
def test_loader_options(name):
    from datamodels.loaders import LOADERS
    loader = compose_config([f"loader={name}"])["loader"]
    assert loader["name"] == name and name in LOADERS


@pytest.mark.parametrize("name", options("sweep"))
def test_sweep_options(name):
    sweep = compose_config([f"sweep={name}"])["sweep"]
    MaskDesign(sweep["design"], 10, sweep["alpha"], sweep["seed"])


@pytest.mark.parametrize("name", options("prune"))
def test_prune_options(name):
    from datamodels.pruning import METHODS, check_fractions
    prune = compose_config([f"prune={name}"])["prune"]
    check_fractions(prune["fractions"])
    assert set(prune["methods"]) <= set(METHODS)


@pytest.mark.parametrize("name", options("fit"))
def test_fit_options(name):
    import torch

    from datamodels.interactions import make_estimator
    fit = compose_config([f"fit={name}"])["fit"]
    if fit["params"].get("device") == "cuda" and not torch.cuda.is_available():
        fit["params"]["device"] = "cpu"  # the refusal without a GPU: tests/test_batched_lasso.py
    make_estimator(fit["method"], **fit["params"])


@pytest.mark.parametrize("name", options("experiment"))
def test_experiments_compose(name):
    config = compose_config([f"experiment={name}"])
    TrainConfig(**config["train"])
    assert Path(config["run_dir"]).parts[0] == "runs"


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_launchers_compose(launcher):
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert launcher in cfg.hydra.launcher._target_.lower()
