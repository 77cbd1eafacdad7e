"""Retraining checks (datamodels.ablation): closed-form predictions against brute force, designs,
statistics on planted margins, and the stage end to end on a small real run."""

import itertools

import numpy as np
import pandas as pd
import pytest

from datamodels.ablation import (AblationError, TargetPolynomial, exact_pairs, heldout_pairs, measure_pairs,
                                 measure_removals)
from datamodels.ablation.design import backgrounds, pairs_design, removal_design, top_mains
from datamodels.ablation.measure import confirm, pair_summary

N = 5
TERMS = {(0,): 1.0, (1,): 0.8, (2,): -0.5, (0, 1): -0.7, (1, 3): 0.4, (0, 1, 2): 0.3, (2, 3, 4): -0.6, (4,): 0.2}


def poly(terms=TERMS, n=N):
    return TargetPolynomial(n, [list(k) for k in terms], list(terms.values()))


def value(terms, x):
    return sum(m for k, m in terms.items() if all(x[p] for p in k))


def expectation(terms, level, fixed, n=N):
    """E[f] over masks that keep each free player with probability ``level``; ``fixed``: player -> 0/1."""
    free = [p for p in range(n) if p not in fixed]
    total = 0.0
    for bits in itertools.product((0, 1), repeat=len(free)):
        x = dict(fixed) | dict(zip(free, bits))
        weight = np.prod([level if b else 1 - level for b in bits])
        total += weight * value(terms, x)
    return total


@pytest.mark.parametrize("level", [0.3, 0.5, 1.0])
def test_pair_and_removal_predictions_equal_brute_force_expectations(level):
    p = poly()
    for i, j in itertools.combinations(range(N), 2):
        truth = (expectation(TERMS, level, {i: 1, j: 1}) - expectation(TERMS, level, {i: 1, j: 0})
                 - expectation(TERMS, level, {i: 0, j: 1}) + expectation(TERMS, level, {i: 0, j: 0}))
        assert p.pair_interaction(i, j, level) == pytest.approx(truth, abs=1e-12)
    for removed in ([0], [0, 1], [2, 3, 4], [1, 4]):
        truth = expectation(TERMS, level, {r: 1 for r in removed}) - expectation(TERMS, level, {r: 0 for r in removed})
        assert p.removal_drop(removed, level) == pytest.approx(truth, abs=1e-12)


def test_greedy_removes_a_redundant_pair_as_a_block_where_one_at_a_time_cannot():
    # From the whole set, each twin alone is worth nothing (1 - 1): only removing both costs 1.
    terms = {(0,): 1.0, (1,): 1.0, (0, 1): -1.0, (2,): 0.4, (3,): 0.1}
    p = poly(terms, 4)
    assert p.removal_drop([0], 1.0) == pytest.approx(0.0)
    assert list(p.greedy_removal(2, 1.0)) == [0, 1]
    assert p.removal_drop([0, 1], 1.0) == pytest.approx(1.0)
    assert p.removal_drop([0, 2], 1.0) == pytest.approx(0.4)
    assert list(p.greedy_removal(1, 1.0)) == [2]  # a block that does not fit in k is not taken
    assert list(top_mains(p, 3)) == [0, 1, 2]
    # On a background at alpha 1/2 a twin is worth something alone (1 - 1/2): it goes first.
    assert list(p.greedy_removal(1, 0.5)) == [0]


def test_pair_design_is_a_paired_factorial_and_trains_a_pair_once():
    checks = pd.DataFrame({"target": [0, 1, 0], "i": [1, 1, 0], "j": [3, 3, 4]})
    design = pairs_design(checks, 6, 0.5, 3, seed=7)
    assert list(checks["pair"]) == [0, 0, 1]  # the same players on two targets: one set of masks
    assert design.num_models == 2 * 3 * 4 and design.repeats == 1
    drawn = backgrounds(6, 0.5, 3, seed=7)
    np.testing.assert_array_equal(drawn, backgrounds(6, 0.5, 3, seed=7))
    for (pair, b), rows in design.roles.groupby(["pair", "background"]):
        cells = design.masks[rows.index]
        i, j = [(1, 3), (0, 4)][pair]
        assert len(set(design.seed_groups[rows.index])) == 1  # one seed for the four cells
        np.testing.assert_array_equal(cells[:, i], rows["in_i"].astype(bool))
        np.testing.assert_array_equal(cells[:, j], rows["in_j"].astype(bool))
        others = [p for p in range(6) if p not in (i, j)]
        assert (cells[:, others] == drawn[b, others]).all()
    assert len(set(design.seed_groups)) == 6


def _planted_margins(design, terms, n, T, targets_scale, noise=0.3, seed_noise=1.0):
    """Margins of a planted game for every model of a design: the polynomial, a seed effect shared
    by the models of one seed group (it must cancel in a paired difference), and independent noise."""
    rng = np.random.default_rng(0)
    masks = np.repeat(design.masks, design.repeats, axis=0)
    mask_id = np.repeat(np.arange(len(design.masks)), design.repeats)
    repeat = np.tile(np.arange(design.repeats), len(design.masks))
    group = design.seed_groups[mask_id] * design.repeats + repeat
    seed_effect = rng.normal(0, seed_noise, group.max() + 1)[group]
    clean = np.array([value(terms, x) for x in masks])
    margins = np.stack([s * clean for s in targets_scale], axis=1) + seed_effect[:, None]
    return mask_id, repeat, margins + rng.normal(0, noise, margins.shape)


def test_measured_pairs_recover_planted_interactions_and_controls_stay_unconfirmed():
    n = 8
    terms = {(0,): 1.0, (1,): 1.0, (0, 1): -2.0, (2,): 0.5, (3,): 0.5, (2, 3): 1.5, (4,): 0.3}
    p = poly(terms, n)
    checks = pd.DataFrame({"target": [0, 0, 0, 1], "i": [0, 2, 5, 0], "j": [1, 3, 6, 1],
                           "predicted": [p.pair_interaction(0, 1, 0.5), p.pair_interaction(2, 3, 0.5), 0.0,
                                         2 * p.pair_interaction(0, 1, 0.5)],
                           "control": [False, False, True, False]})
    design = pairs_design(checks, n, 0.5, 24, seed=0)
    mask_id, repeat, margins = _planted_margins(design, terms, n, 2, [1.0, 2.0])
    measured, everywhere = measure_pairs(checks, design.roles, mask_id, repeat, margins, fdr=0.1)
    assert (measured["backgrounds"] == 24).all()
    for row in measured.itertuples():
        assert abs(row.measured - row.predicted) < 4 * row.se
    assert list(measured["confirmed"]) == [True, True, False, True]
    # the shared seed effect cancels: the spread is the independent noise's (4 cells of sd 0.3)
    assert measured["se"].iloc[0] < 0.6 / np.sqrt(24) * 1.5
    np.testing.assert_allclose(everywhere[0, 1], 2 * everywhere[0, 0], rtol=0.2)  # also measured on target 1
    summary = pair_summary(measured.assign(stratum=0, stratum_size=3, rank=[0, 1, -1, 2]))
    assert list(summary["group"]) == ["fitted pairs", "controls"]
    assert summary["rate"].tolist() == [1.0, 0.0]
    assert summary["right_sign"].iloc[0] == 3 and summary["real_at_least"].iloc[0] == 1.0
    # pairs measured with the wrong sign half the time bound the real share from below by 2 * share - 1
    coin = measured.assign(measured=[1.0, -1.0, 1.0, -1.0], predicted=[1.0, 1.0, 1.0, 1.0], control=False,
                           stratum=0, stratum_size=4, rank=[0, 1, 2, 3])
    assert pair_summary(coin)["real_at_least"].iloc[0] == 0.0  # 2 of 4 right: nothing is known to be real
    assert summary["slope_lo"].iloc[0] < 1.0 < summary["slope_hi"].iloc[0]


def test_confirmation_needs_the_predicted_sign():
    checks = pd.DataFrame({"measured": [2.0, -2.0, 0.1], "predicted": [1.0, 1.0, 1.0], "p": [1e-6, 1e-6, 0.8]})
    out = confirm(checks, 0.1)
    assert out["passes"].tolist() == [True, True, False]
    assert out["confirmed"].tolist() == [True, False, False]


@pytest.mark.parametrize("background", ["alpha", "full"])
def test_measured_removals_recover_planted_drops(background):
    n = 6
    terms = {(0,): 1.0, (1,): 1.0, (0, 1): -1.0, (2,): 0.6, (3,): -0.2}
    p = poly(terms, n)
    level = 1.0 if background == "full" else 0.5
    sets = pd.DataFrame({"target": [0, 0, 0, 0], "method": ["a", "b", "a", "b"], "k": [1, 1, 2, 2],
                         "members": [[0], [0], [0, 1], [2, 3]]})
    design = removal_design(sets, n, background, 0.5, 30, seed=1)
    assert list(sets["set"]) == [0, 0, 1, 2]  # the same set chosen twice is trained once
    if background == "full":
        assert design.repeats == 30 and (design.masks[0]).all() and len(design.masks) == 4
    mask_id, repeat, margins = _planted_margins(design, terms, n, 1, [1.0], noise=0.2)
    measured = measure_removals(sets, design.roles, mask_id, repeat, margins)
    assert (measured["backgrounds"] == 30).all()
    for row, members in zip(measured.itertuples(), sets["members"]):
        assert abs(row.drop - p.removal_drop(members, level)) < 4 * row.se + 1e-9
    assert measured["lo"].iloc[2] > 0


def test_heldout_pairs_estimate_the_expected_interaction():
    n = 6
    terms = {(0,): 1.0, (1,): 1.0, (0, 1): -2.0, (2,): 0.5, (1, 2, 3): 1.0}
    p = poly(terms, n)
    rng = np.random.default_rng(3)
    masks = rng.random((4000, n)) < 0.5
    y = np.array([value(terms, x) for x in masks]) + rng.normal(0, 0.5, len(masks))
    checks = pd.DataFrame({"target": [0, 0], "i": [0, 4], "j": [1, 5],
                           "predicted": [p.pair_interaction(0, 1, 0.5), 0.0]})
    out = heldout_pairs(checks, lambda players: masks[:, players], lambda t: y, fdr=0.1)
    assert abs(out["measured"].iloc[0] - (-2.0)) < 4 * out["se"].iloc[0]
    assert out["confirmed"].tolist() == [True, False]


def test_exact_pairs_of_an_exhaustive_sweep_are_the_expected_interactions():
    n = 4
    terms = {(0,): 1.0, (0, 1): -1.5, (1, 2, 3): 0.8, (2,): 0.3}
    p = poly(terms, n)
    masks = np.array([[(c >> b) & 1 for b in range(n)] for c in range(2 ** n)] * 2, dtype=bool)
    margins = np.array([[value(terms, x)] for x in masks])
    checks = pd.DataFrame({"target": [0, 0, 0], "i": [0, 1, 2], "j": [1, 2, 3]})
    out = exact_pairs(checks, masks, margins)
    np.testing.assert_allclose(out["exact"], [p.pair_interaction(i, j, 0.5) for i, j in [(0, 1), (1, 2), (2, 3)]])
    assert (out["exact_se"] == 0).all()  # no seed noise in a polynomial
    noisy = margins + np.random.default_rng(0).normal(0, 1.0, margins.shape)
    se = exact_pairs(checks, masks, noisy)["exact_se"]
    # sigma = 1, two repeats of 16 subsets: 2 / sqrt(32); the pooled variance has 16 degrees of freedom
    np.testing.assert_allclose(se, 2 / np.sqrt(32), rtol=0.5)
    with pytest.raises(AblationError, match="need all 16 subsets"):
        exact_pairs(checks, masks[1:16], margins[1:16])


# ------------------------------------------------------------------------------ the stage, end to end

EXHAUSTIVE = ["dataset.train=120", "dataset.target=6", "dataset.holdout=100", "players=cluster",
              "players.num_groups=5", "sweep=exhaustive", "train.epochs=4", "model.width=8", "progress=false"]


@pytest.fixture(scope="module")
def exhaustive_run(tmp_path_factory):
    """Every subset of 5 cluster players, twice (64 small CNNs), and its linear fit."""
    from conftest import run_job

    run_dir = tmp_path_factory.mktemp("ablate") / "run"
    args = [*EXHAUSTIVE, f"run_dir={run_dir}"]
    run_job("sweep.py", *args)
    run_job("fit.py", "fit=linear", "fit.workers=1", *args)
    return run_dir


@pytest.mark.slow
def test_pair_checks_agree_with_the_exhaustive_truth_and_resume(exhaustive_run):
    from conftest import run_job

    from datamodels.views.analysis import RunView
    from datamodels.store.shards import load_sweep

    args = [*EXHAUSTIVE, f"run_dir={exhaustive_run}", "ablate.fit_engine=linear", "ablate.controls=false",
            "ablate.pairs=[[0,0,1],[1,2,3],[2,0,4],[3,0,1]]", "ablate.backgrounds=8", "ablate.models_per_shard=32"]
    # one shard (a SLURM array task): trained, nothing measured yet
    first = run_job("ablate.py", *args, "ablate.shard=0").stdout
    assert "3 pairs" not in first and "4 pairs + 0 controls, 8 backgrounds each: 96 models in 3 shards" in first
    assert "models are still missing" in first
    status = run_job("status.py", f"run_dir={exhaustive_run}/ablations/pairs").stdout
    assert "1 of 3 shards" in status or "32 of 96" in status, status
    out = run_job("ablate.py", *args).stdout
    assert "written:" in out
    view = RunView.open(exhaustive_run)
    checks = view.ablation("pairs")
    # the same players on targets 0 and 3 are one set of masks: 3 pairs x 8 backgrounds x 4 cells
    child = load_sweep(exhaustive_run / "ablations" / "pairs", require_complete=True)
    assert len(child.model_index) == 96
    # the four cells of a background share one seed; cells differ in the pair's players only
    seeds = child.seed.reshape(-1, 4)
    assert (seeds == seeds[:, :1]).all() and len(np.unique(seeds[:, 0])) == 24
    # every measurement agrees with the exact double difference of all 32 subsets
    assert checks["backgrounds"].eq(8).all() and {"exact", "exact_se"} <= set(checks.columns)
    gap = (checks["measured"] - checks["exact"]).abs()
    assert (gap <= 3 * np.sqrt(checks["se"] ** 2 + checks["exact_se"] ** 2)).all(), checks
    # a rerun trains nothing and measures the same
    again = run_job("ablate.py", *args).stdout
    assert "ablation shards" not in again and "written:" in again
    # other settings under the same name are refused; the folder is left as it was
    other = run_job("ablate.py", *args[:-2], "ablate.backgrounds=9", "ablate.models_per_shard=32", check=False)
    assert other.returncode == 1 and "holds another design" in other.stderr and "Traceback" not in other.stderr
    assert len(load_sweep(exhaustive_run / "ablations" / "pairs").model_index) == 96


@pytest.mark.slow
def test_removal_checks_measure_every_method_and_bad_input_is_one_line(exhaustive_run):
    from conftest import run_job

    from datamodels.views.analysis import RunView

    args = [*EXHAUSTIVE, f"run_dir={exhaustive_run}", "ablate=removal", "ablate.fit_engine=linear",
            "ablate.targets=[0,1]", "ablate.ks=[1,2]", "ablate.background=full", "ablate.backgrounds=3",
            "ablate.methods=[interactions,linear,random]"]
    out = run_job("ablate.py", *args).stdout
    assert "12 removal sets (2 targets x interactions, linear, random x k in [1, 2], background=full), 3 seeds" in out
    measured = RunView.open(exhaustive_run).ablation("removal-full")
    assert len(measured) == 12 and measured["backgrounds"].eq(3).all()
    assert measured["flip_rate"].dropna().between(0, 1).all() and measured["drop"].notna().all()
    assert (measured["members"].map(len) == measured["k"]).all()
    checked = [a for a in args if not a.startswith("ablate.backgrounds")] + ["ablate.name=bad"]
    for bad, message in [("ablate.ks=[9]", "larger than the run's 5 players"),
                         ("ablate.targets=[7]", "have no fit=linear"),
                         ("ablate.methods=[trak]", "'trak' is neither"),
                         ("ablate.budget=10", "cannot pay for two backgrounds"),
                         ("ablate.fit_engine=proxyspex", "no target has a proxyspex fit"),
                         ("ablate.background=half", "choose one of alpha, full")]:
        proc = run_job("ablate.py", *checked, bad, check=False)
        assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr, (bad, proc.stderr)
    assert not (exhaustive_run / "ablations" / "bad").exists()


def test_settings_are_checked_in_one_line():
    from datamodels.ablation import AblateSettings
    from datamodels.errors import UserError

    for config, message in [({"budgte": 10}, "ablate.budgte is not a setting; did you mean ablate.budget?"),
                            ({"design": "pair"}, "choose one of pairs, removal, heldout"),
                            ({"fdr": 1.5}, r"ablate.fdr=1.5 must lie in \(0, 1\)"),
                            ({"ks": [0, 2]}, "list of positive integers"),
                            ({"workers": 0}, "ablate.workers=0 must be a positive integer")]:
        with pytest.raises(UserError, match=message):
            AblateSettings.from_config(config)
    assert AblateSettings.from_config({"ks": 4}).ks == [4]  # a scalar where a list is expected (datamodels.settings)
    with pytest.raises(AblationError, match=r"ablate.ks=4 must be a list, e.g. ablate.ks=\[4\]"):
        AblateSettings(ks=4)  # built directly, not from the config
    assert AblateSettings(design="removal", background="full").folder_name == "removal-full"
    assert AblateSettings(name="mine").folder_name == "mine"


def test_held_out_pairs_of_a_planted_run_are_confirmed_and_retraining_needs_its_dataset(tmp_path):
    from test_fit_job import GAMES, write_sweep

    from datamodels.ablation import AblateSettings, plan_ablation, run_ablate
    from datamodels.fit.stage import FitSettings, run_fit

    write_sweep(tmp_path)  # planted games, no dataset: the margins are the games plus noise
    run_fit(tmp_path, FitSettings("proxyspex", workers=1), progress=False)
    result = run_ablate(tmp_path, AblateSettings(design="heldout", pairs=None, controls=False), announce=lambda _: None)
    measured = result.outputs["checks"].set_index(["target", "i", "j"])
    planted = [(t, *sorted(k), v) for t, game in enumerate(GAMES) for k, v in game.items() if len(k) == 2]
    for target, i, j, value in planted:  # each planted pair is found, measured near its value with its sign
        row = measured.loc[(target, i, j)]
        assert abs(row["measured"] - value) < 4 * row["se"] and np.sign(row["measured"]) == np.sign(value)
    # 160 held-out models (about 36 a cell) measure a pair of size 1 to a standard error of 0.25 to 0.38
    assert measured["confirmed"].sum() >= len(planted) // 2
    assert (tmp_path / "ablations" / "heldout" / "results" / "figure.png").stat().st_size > 1000
    with pytest.raises(AblationError, match="has no dataset linked .* ablate=heldout measures"):
        plan_ablation(tmp_path, AblateSettings(design="pairs", pairs=[[0, 18, 22]]))
    with pytest.raises(AblationError, match=r"ablate.pairs: players 3, 99 must be two different players in 0..23"):
        plan_ablation(tmp_path, AblateSettings(design="heldout", pairs=[[0, 3, 99]]))
