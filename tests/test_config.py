"""Every option of every config group composes, and its values are accepted by the library."""

import dataclasses
import importlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import CONF, ROOT, compose_config
from datamodels.sweep.masks import MaskDesign, alpha_setting
from datamodels.sweep.models import build_model
from datamodels.sweep.train import TrainConfig, lr_lambda


def options(group: str) -> list[str]:
    """The options a user chooses with group=NAME (files starting with _ are shared bases)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_every_group_is_chosen_by_default_and_has_options():
    defaults = yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
    chosen = {next(iter(d)).removeprefix("optional "): next(iter(d.values())) for d in defaults if isinstance(d, dict)}
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}
    assert groups == set(chosen)  # a new group folder must be wired into config.yaml
    for group, default in chosen.items():
        assert options(group) and (default is None or default in options(group)), group


@pytest.mark.parametrize("name", [n for n in options("dataset") if n != "none"])  # none: an import's
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
    cfg = TrainConfig(**compose_config([f"train={name}"])["train"])
    schedule = [lr_lambda(cfg, 100)(s) for s in range(100)]
    assert max(schedule) == pytest.approx(1.0) and schedule[-1] < 0.05  # warms up to the peak, decays to ~0


@pytest.mark.parametrize("name", options("loader"))
def test_loader_options(name):
    from datamodels.sweep.stage import LOADERS
    loader = compose_config([f"loader={name}"])["loader"]
    assert loader["name"] == name and name in LOADERS


@pytest.mark.parametrize("name", options("sweep"))
def test_sweep_options(name):
    sweep = compose_config([f"sweep={name}"])["sweep"]
    design = MaskDesign(sweep["design"], 10, alpha_setting(sweep["alpha"]), sweep["seed"])
    masks = np.array([design.mask(j) for j in range(design.num_masks or 400)])
    if design.kind == "exhaustive":
        assert len(np.unique(masks, axis=0)) == 2**10 and sweep["repeats"] >= 2  # the references need seeds
    else:  # each mask keeps about its drawn alpha, and the grid's alphas are all drawn
        alphas = design.alpha_of(np.arange(len(masks)))
        assert set(alphas) == set(design.alphas)
        assert abs(masks.mean() - alphas.mean()) < 0.03


@pytest.mark.parametrize("name", options("prune"))
def test_prune_options(name):
    from datamodels.pruning import PruneSettings
    settings = PruneSettings(**compose_config([f"prune={name}"])["prune"])
    assert settings.draws == settings.eval_seeds  # draws default to the evaluation's seeds
    assert set(settings.fits) <= {"interactions", "linear"} and settings.fractions == sorted(settings.fractions)[::-1]


@pytest.mark.parametrize("name", options("fit"))
def test_fit_options_fit_a_game(name):
    """Each fit option's engine, with the option's parameters, finds a planted game's strong player."""
    from datamodels.fit.stage import FitSettings
    from datamodels.interactions import SPEX, spex_design

    fit = compose_config([f"fit={name}"])["fit"]
    if fit["params"].get("device") == "cuda" and not torch.cuda.is_available():
        fit["params"]["device"] = "cpu"  # the refusal without a GPU: tests/test_batched_lasso.py
    settings = FitSettings(**fit)
    assert settings.engine == name
    rng = np.random.default_rng(0)
    if name == "spex":  # it reads its own design: the run's budget and degree, as the fit stage passes them
        settings.params |= SPEX.params_from_run({"design": "spex", "budget": 300, "sweep_seed": 0, "degree": 2}, {})
        masks = spex_design(12, 300, 0, 2)
    else:
        masks = rng.random((400, 12)) < 0.5
    margins = 2.0 * masks[:, 3] + 0.3 * masks[:, 5] + 0.05 * rng.standard_normal(len(masks))
    engine = settings.new_engine().fit(masks, margins)
    assert max(engine.mobius_.items(), key=lambda kv: abs(kv[1]) if kv[0] else 0)[0] == (3,)


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


def test_settings_refuse_unknown_keys_in_one_line_and_take_a_scalar_for_a_list():
    """datamodels.settings, the one builder of every settings dataclass from its config section."""
    from datamodels.ablation import AblateSettings
    from datamodels.errors import UserError
    from datamodels.fit.stage import FitSettings
    from datamodels.sweep.importing import ImportSettings
    from datamodels.sweep.stage import SweepSettings
    from datamodels.pruning import PruneSettings
    from datamodels.settings import from_section, list_fields, not_a_setting
    from datamodels.sweep.train import TrainConfig
    from datamodels.fit.trak import TrakSettings

    for cls, typo, name in [(FitSettings, "worker", "workers"), (PruneSettings, "fraction", "fractions"),
                            (TrakSettings, "model", "models"), (ImportSettings, "mask", "masks"),
                            (AblateSettings, "budgte", "budget"), (TrainConfig, "epoch", "epochs"),
                            (SweepSettings, "repeat", "repeats")]:
        section = compose_config()[cls.section]
        assert cls.from_config(section) == from_section(cls, section, cls.section)
        with pytest.raises(UserError, match=rf"^{cls.section}\.{typo} is not a setting; did you mean "
                                            rf"{cls.section}\.{name}\?$"):
            cls.from_config(section | {typo: 1})
    assert list_fields(PruneSettings) == {"fractions", "methods"} and list_fields(FitSettings) == {"targets"}
    assert list_fields(AblateSettings) == {"methods", "ks"} and not list_fields(TrainConfig)
    prune = PruneSettings.from_config(compose_config(["prune.fractions=0.5", "prune.methods=random"])["prune"])
    assert prune.fractions == [0.5] and prune.methods == ["random"]
    assert FitSettings.from_config(compose_config(["fit.targets=3"])["fit"]).targets == [3]
    assert PruneSettings.from_config({"methods": None}).methods  # None stays None: the default that adapts
    assert not_a_setting("fit.zzz", {"fit": {"workers": 1, "alpha": 2}}) == \
        "fit.zzz is not a setting (fit settings: alpha, workers)"
    assert not_a_setting("fitt.workerz", {"fit": {"workers": 1}}) == \
        "fitt.workerz is not a setting; did you mean fit.workers?"
    assert not_a_setting("fit.workers", {"fit": {"workers": 1}}) is None


# A setting a job reads from outside its section: the top-level key that gives it.
OUTSIDE_THE_SECTION = {"train.compile": "compile"}


def settings_classes() -> list[type]:
    """Every settings dataclass of the library: each ``class X(Settings)`` in its source, so
    that a new one is compared without being listed here."""
    found = []
    for path in sorted((ROOT / "datamodels").rglob("*.py")):
        for name in re.findall(r"^class (\w+)\(Settings\)", path.read_text(), re.MULTILINE):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found.append(getattr(importlib.import_module(module), name))
    return found


def test_settings_defaults_are_the_yamls():
    """Each settings dataclass's defaults are its config group's default yaml (conf/config.yaml's
    choice), key by key: a library caller gets what a job gets. Compared as built (a default that
    the dataclass derives, prune.draws, is compared derived); fit.params by the engine it makes
    (its default, {}, is the engine's own defaults)."""
    config = compose_config()
    classes = settings_classes()
    assert {cls.__name__ for cls in classes} >= {"FitSettings", "PruneSettings", "AblateSettings", "TrainConfig",
                                                 "DuplicatesSettings", "CurateSettings", "SweepSettings"}
    mismatched = []
    for cls in classes:
        section = dict(config[cls.section])
        for key, top in OUTSIDE_THE_SECTION.items():
            if key.startswith(f"{cls.section}."):
                section[key.split(".", 1)[1]] = config[top]
        from_yaml, default = cls.from_config(section), cls()
        names = [f.name for f in dataclasses.fields(cls)]
        mismatched += [f"{cls.section}.{name} is missing from conf/ ({cls.__name__} has a default)"
                       for name in names if name not in section]
        pairs = {name: (getattr(from_yaml, name), getattr(default, name)) for name in names if name in section}
        if "params" in pairs and hasattr(default, "engine"):
            ours, theirs = from_yaml.new_engine().get_params(), default.new_engine().get_params()
            pairs.pop("params")
            pairs |= {f"params.{key}": (ours.get(key), theirs.get(key)) for key in ours.keys() | theirs.keys()}
        mismatched += [f"{cls.section}.{name}: {ours!r} in conf/, {theirs!r} in {cls.__name__}"
                       for name, (ours, theirs) in sorted(pairs.items()) if _plain(ours) != _plain(theirs)]
    assert not mismatched, "settings defaults that differ from conf/:\n" + "\n".join(mismatched)


def _plain(value):
    """``value`` with tuples as lists (YAML has only lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def test_settings_renamed_fit_engine_still_read_under_their_old_names_for_one_release():
    from datamodels.ablation.planning import AblateSettings
    from datamodels.errors import UserError
    from datamodels.fit.stage import FitSettings
    from datamodels.pruning.duplicates import DuplicatesSettings
    from datamodels.pruning.stage import PruneSettings
    from datamodels.renamed import current_overrides

    with pytest.warns(FutureWarning, match="fit.method is renamed fit.engine"):
        fit = FitSettings.from_config({"method": "linear", "workers": 1})
    assert fit.engine == "linear"
    with pytest.warns(FutureWarning, match="prune.fit_method is renamed prune.fit_engine"):
        assert PruneSettings.from_config({"fit_method": "linear"}).fit_engine == "linear"
    with pytest.warns(FutureWarning, match="ablate.fit_method is renamed ablate.fit_engine"):
        assert AblateSettings.from_config({"fit_method": "linear"}).fit_engine == "linear"
    with pytest.warns(FutureWarning, match="duplicates.method is renamed duplicates.engine"):
        assert DuplicatesSettings.from_config({"method": "linear"}).engine == "linear"
    with pytest.raises(UserError, match="fit.method and fit.engine both given"):
        FitSettings.from_config({"method": "linear", "engine": "spex"})
    # the records that decide whether a stage is up to date keep the old key: nothing recorded goes stale
    assert fit.recorded()["method"] == "linear" and "engine" not in fit.recorded()
    assert PruneSettings().keep_set_settings()["fit_method"] == "proxyspex"
    with pytest.warns(FutureWarning):
        assert current_overrides(["fit.method=linear", "+prune.fit_method=x", "fit.workers=2", "-m",
                                  "ablate.fit_method=linear,proxyspex"]) == [
            "fit.engine=linear", "+prune.fit_engine=x", "fit.workers=2", "-m", "ablate.fit_engine=linear,proxyspex"]
