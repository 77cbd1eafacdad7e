"""Every engine shares one shape: scikit-learn's estimator contract, the fit stage's hooks, and
a new engine is one module plus one config file (the example of docs/interactions.md, run here)."""

import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks

from conftest import ROOT, run_job
from datamodels.interactions import ENGINES, SPEX, spex_design
from datamodels.sweep.planted import write_planted_sweep
from datamodels.tables import read_frame
from datamodels.run.folder import RunFolder

# scikit-learn's checks that apply to estimators over 0/1 masks: the ones about parameters,
# cloning and construction (the others fit on real-valued data, which no engine accepts).
API_CHECKS = ["check_no_attributes_set_in_init", "check_parameters_default_constructible",
              "check_get_params_invariance", "check_set_params", "check_estimator_cloneable",
              "check_estimator_repr", "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order",
              "check_estimator_tags_renamed", "check_valid_tag_types"]


def unfitted(name):
    return ENGINES[name](device="cpu") if name == "linear_gpu" else ENGINES[name]()


def mask_game(name, seed=0):
    """Masks the engine reads (SPEX: its design) and margins of a planted game on them."""
    rng = np.random.default_rng(seed)
    masks = spex_design(12, 300, 0, 2) if name == "spex" else rng.random((300, 12)) < 0.5
    margins = 1.5 * masks[:, 2] - 1.0 * masks[:, 7] + 0.8 * masks[:, 2] * masks[:, 5] + 0.05 * rng.standard_normal(len(masks))
    return masks, margins


def configured(name):
    engine = unfitted(name)
    return engine.set_params(budget=300, degree=2) if name == "spex" else engine


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engines_pass_scikit_learns_api_checks(name, check):
    getattr(estimator_checks, check)(name, unfitted(name))


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engines_fit_masks_as_estimators_do(name):
    masks, margins = mask_game(name)
    engine = configured(name)
    assert engine.fit(masks, margins) is engine
    assert engine.n_players_ == 12 and len(engine.players_) >= 1 and engine.kkt_added_ >= 0
    assert max((S for S in engine.mobius_ if S), key=lambda S: abs(engine.mobius_[S])) == (2,)
    again = configured(name).fit(masks, margins)
    assert again.mobius_ == pytest.approx(engine.mobius_)  # fitting is deterministic
    copy = pickle.loads(pickle.dumps(engine))
    np.testing.assert_allclose(copy.predict(masks), engine.predict(masks))
    assert not hasattr(clone(engine), "mobius_")


SCREENED_BAD = {"cv": [1, 2.5, True], "n_penalties": [0], "screen_k": [0, 2.5, "10"], "random_state": [-1, "0", 2**32]}
BAD_PARAMS = {
    "linear": SCREENED_BAD,
    "proxyspex": SCREENED_BAD | {
        "max_order": [0, 2.0], "depths": [(4,), (0,), "2", 2], "learning_rates": [(), (0.0,), (-0.1,), 0.3],
        "n_estimators": [0], "early_stopping_rounds": [0], "val_fraction": [0.0, 1.0], "min_child_samples": [-1],
        "n_candidates": [0], "level": [1.5, 0, float("nan")], "relax": ["yes"], "error_rate": ["bh"],
        "untested": ["keep", True]},
    "spex": {"budget": [None, 0, 2.5], "seed": [1.5], "degree": [0], "decoder": ["chase"]},
    "linear_gpu": {"device": ["gpu0", None], "n_penalties": [0], "eps": [0.0, 1.0], "val_fraction": [1.0],
                   "patience": [0], "max_iter": [0], "tol": [-1.0], "target_batch": [0], "seed": [-1]},
}


@pytest.mark.parametrize("name, param, value", [(name, param, value) for name, bad in BAD_PARAMS.items()
                                                for param, values in bad.items() for value in values])
def test_engines_refuse_a_bad_parameter_before_any_work(name, param, value):
    """Every entry point that fits checks every parameter first, as scikit-learn's ``fit`` does:
    given no data at all, it names the parameter rather than failing on the data."""
    assert set(BAD_PARAMS) == set(ENGINES)  # a new engine lists its bad parameters here
    configured(name)._check_params()  # the defaults pass
    engine = configured(name).set_params(**{param: value})
    calls = {"fit": lambda: engine.fit(None, None),
             "fit_block": lambda: engine.fit_block(None, None, [0]),
             "fit_targets": lambda: list(engine.fit_targets(None, None)),
             "heldout_models": lambda: engine.heldout_models(None, None, 0.2, 0)}
    for call in calls.values():
        with pytest.raises(ValueError, match=rf"^{type(engine).__name__}: {param} (must|is not set)"):
            call()


@pytest.mark.slow
def test_a_new_engine_is_one_module_and_one_config(tmp_path):
    """The example engine of docs/interactions.md, as printed there, through jobs/fit.py."""
    doc = (ROOT / "docs" / "interactions.md").read_text()
    section = doc[doc.index("## Adding an engine"):]
    module, config = re.findall(r"```(?:python|yaml)\n(.*?)```", section, re.S)[:2]
    assert len(module.strip().splitlines()) <= 32  # "a 30-line example engine"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "my_engines.py").write_text(module)
    (tmp_path / "conf" / "fit").mkdir(parents=True)
    (tmp_path / "conf" / "fit" / "diff_in_means.yaml").write_text(config)
    run = tmp_path / "run"
    write_planted_sweep(run, 16, 2, 400, noise=0.1, models_per_shard=200, progress=False, n_triples=0)
    proc = run_job("fit.py", "fit=diff_in_means", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"run_dir={run}",
                   "progress=false", env={"PYTHONPATH": str(tmp_path / "code")})
    assert "diff_in_means: 2 targets, median held-out R^2" in proc.stdout
    metrics, meta = read_frame(RunFolder(run).fit_metrics_file(), "fit")
    assert set(metrics["engine"]) == {"diff_in_means"} and meta["engines"]["diff_in_means"]["params"] == {"top_k": 20}
    assert (metrics["r2"] > 0.2).all()  # the planted mains carry most of the variance


def test_spex_reads_its_design_from_the_run_and_refuses_another_degree():
    run = {"design": "spex", "budget": 300, "sweep_seed": 3, "degree": 2}
    assert SPEX.params_from_run(run, {"degree": None}) == {"budget": 300, "seed": 3, "degree": 2}
    with pytest.raises(ValueError, match=r"fit.params.degree=5, but this sweep's SPEX design has degree 2"):
        SPEX.params_from_run(run, {"degree": 5})
