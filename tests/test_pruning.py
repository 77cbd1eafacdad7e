import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from conftest import TINY, compose_config, run_job
from datamodels.pruning import (PruningError, Surrogate, ccs_keep_set, check_fractions, class_quotas,
                                greedy_keep_set, hardest_keep_set, load_surrogates, paired_differences,
                                make_keep_sets, player_classes, stratified_keep_set, summarize, synergy_blocks)
from datamodels.pruning.retraining import el2n_scores, evaluate_keep_sets, full_data_steps, retraining_jobs
from datamodels.sweep.stage import SweepRun

# Players 0 and 1 are near-duplicates (each worth 1 alone, 1 together: redundancy); 2 and 3
# are worthless alone and worth 2.2 together (synergy); 4 and 5 have plain main effects.
PLANTED = {(0,): 1.0, (1,): 1.0, (0, 1): -1.0, (2,): 0.1, (3,): 0.1, (2, 3): 2.0, (4,): 0.5, (5,): 0.3}


def surrogate(polynomials: list[dict], n: int, constant: float = -1.5, scale: float = 1.0) -> Surrogate:
    rows = [(t, members, value) for t, poly in enumerate(polynomials) for members, value in poly.items()]
    T = len(polynomials)
    return Surrogate.from_terms(n, np.full(T, constant), np.full(T, scale), [r[0] for r in rows],
                                [r[1] for r in rows], [r[2] for r in rows])


def expected_accuracy(s: Surrogate, kept) -> float:
    x = np.zeros((1, s.n), dtype=bool)
    x[0, list(kept)] = True
    return float(special.ndtr(s.predict(x)[0] / s.scale).mean())


def test_fractions_are_checked():
    assert check_fractions([0.2, 1.0, 0.5, 0.5]) == [1.0, 0.5, 0.2]
    with pytest.raises(PruningError, match="must lie in"):
        check_fractions([0.5, 1.5])


def test_player_class_is_the_majority_label():
    groups = np.array([0, 0, 0, 1, 1, 2])
    labels = np.array([3, 3, 1, 2, 2, 0])
    np.testing.assert_array_equal(player_classes(groups, labels), [3, 2, 0])


def test_class_quotas_keep_proportions_and_minimums():
    classes = np.repeat([0, 1, 2], [50, 30, 20])
    np.testing.assert_array_equal(class_quotas(classes, 10), [5, 3, 2])
    np.testing.assert_array_equal(class_quotas(classes, 7), [4, 2, 1])  # 3.5, 2.1, 1.4: largest remainder
    np.testing.assert_array_equal(class_quotas(classes, 3, min_per_class=1), [1, 1, 1])
    assert class_quotas(classes, 100).tolist() == [50, 30, 20]
    with pytest.raises(PruningError, match="cannot hold prune.min_per_class=2 of each of the 3 classes"):
        class_quotas(classes, 5, min_per_class=2)


def test_greedy_keeps_one_of_a_redundant_pair_and_synergies_whole():
    s = surrogate([PLANTED] * 3, 6)
    assert [list(b) for b in synergy_blocks(s, 1.0) if len(b) > 1] == [[2, 3]]
    for size in range(2, 6):
        kept = set(greedy_keep_set(s, size, min_per_class=0).tolist())
        assert len(kept) == size
        assert {2, 3} <= kept or not {2, 3} & kept  # the synergy is never split
    kept4 = set(greedy_keep_set(s, 4, min_per_class=0).tolist())
    assert len(kept4 & {0, 1}) == 1 and {2, 3, 4} <= kept4  # one duplicate is enough
    best = max(expected_accuracy(s, c) for c in itertools.combinations(range(6), 4))
    assert expected_accuracy(s, kept4) == pytest.approx(best)  # the brute-force optimum


def test_greedy_objective_saturates_per_target():
    # Target 0 is certain either way (huge margin) and should not buy player 0 over player 1,
    # which decides target 1.
    polys = [{(0,): 50.0}, {(1,): 2.0}]
    s = surrogate(polys, 2, constant=-1.0)
    s.constant = np.array([60.0, -1.0])
    assert greedy_keep_set(s, 1, min_per_class=0).tolist() == [1]


def test_greedy_respects_class_quotas():
    rng = np.random.default_rng(0)
    n = 40
    classes = np.repeat([0, 1, 2, 3], [16, 12, 8, 4])
    # Every useful player is of class 0: without quotas the keep-set would be all class 0.
    polys = [{(i,): (1.0 if classes[i] == 0 else 0.01) * rng.uniform(0.5, 1.5) for i in range(n)} for _ in range(5)]
    s = surrogate(polys, n, constant=-8.0)
    free = greedy_keep_set(s, 10, min_per_class=0)
    assert set(classes[free]) == {0}
    for size in (30, 20, 10, 5):
        kept = greedy_keep_set(s, size, classes, min_per_class=1)
        counts = np.bincount(classes[kept], minlength=4)
        assert len(kept) == size and (counts >= np.maximum(size * np.array([16, 12, 8, 4]) // n, 1)).all()


def test_surrogate_from_fit_recovers_the_constant_and_scale():
    rng = np.random.default_rng(1)
    n, m = 6, 3000
    masks = rng.random((m, n)) < 0.5
    truth = surrogate([PLANTED, {(4,): -1.0}], n, constant=0.0)
    truth.constant = np.array([0.7, -0.2])
    noise = rng.normal(0, [[0.5], [0.2]], size=(2, m))
    margins = truth.predict(masks).T + noise
    rows = [(t, list(members), value) for t, poly in enumerate([PLANTED, {(4,): -1.0}]) for members, value in poly.items()]
    table = pd.DataFrame(rows, columns=["target", "members", "mobius"])
    r2 = 1 - noise.var(1) / margins.var(1)
    fitted = Surrogate.from_fit(table, pd.DataFrame({"target": [0, 1], "r2": r2}), masks, margins)
    np.testing.assert_allclose(fitted.constant, [0.7, -0.2], atol=0.03)
    np.testing.assert_allclose(fitted.scale, [0.5, 0.2], rtol=0.05)
    with pytest.raises(PruningError, match="covers 1 of the 2 targets"):
        Surrogate.from_fit(table, pd.DataFrame({"target": [0], "r2": [0.5]}), masks, margins)


def test_baseline_keep_sets():
    rng = np.random.default_rng(0)
    scores = np.arange(100) / 100.0  # player i has difficulty i / 100
    assert hardest_keep_set(scores, 30).tolist() == list(range(70, 100))
    kept = ccs_keep_set(scores, 40, rng, cutoff=0.1, bins=10)
    assert len(kept) == 40 and kept.max() < 90  # the hardest 10% are gone
    per_stratum = np.bincount((kept * 10 // 90).clip(0, 9), minlength=10)  # 9 players per equal-width stratum
    assert per_stratum.min() >= 4 and per_stratum.max() <= 5  # the budget spread evenly
    assert len(ccs_keep_set(scores, 95, rng, cutoff=0.1)) == 95  # never removes more than 1 - fraction
    classes = np.repeat([0, 1, 2], [50, 30, 20])
    kept = stratified_keep_set(classes, 10, rng)
    assert np.bincount(classes[kept]).tolist() == [5, 3, 2]


def test_retraining_jobs_pair_draws_with_seeds():
    keep = pd.DataFrame({"method": ["linear", "random", "random", "random"], "fraction": [0.5] * 4,
                         "draw": [0, 0, 1, 2], "size": [5] * 4, "players": [[0]] * 4})
    assert retraining_jobs(keep, 3) == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 1), (3, 2)]
    with pytest.raises(PruningError, match="hold 3 draws of random at fraction 0.5, but prune.eval_seeds=5"):
        retraining_jobs(keep, 5)


def test_randomised_draws_do_not_depend_on_which_methods_are_asked():
    classes = np.repeat([0, 1], [30, 10])
    alone = make_keep_sets(["stratified"], [0.5], 40, classes, draws=3, progress=False)
    among = make_keep_sets(["random", "ccs", "stratified"][::2], [0.5], 40, classes, draws=3, progress=False)
    pick = among[among["method"] == "stratified"].reset_index(drop=True)
    assert alone["players"].tolist() == pick["players"].tolist()  # streams tagged by the method's name
    assert len({tuple(p) for p in alone["players"]}) == 3  # three different draws
    with pytest.raises(PruningError, match="rank players by EL2N.*has none linked"):
        make_keep_sets(["el2n"], [0.5], 40, classes, progress=False)


def test_more_draws_than_seeds_share_the_seeds():
    keep = pd.DataFrame({"method": ["random"] * 4, "fraction": [0.5] * 4, "draw": [0, 1, 2, 3], "size": [5] * 4,
                         "players": [[0]] * 4})
    assert retraining_jobs(keep, 2) == [(0, 0), (1, 1), (2, 0), (3, 1)]


def test_summaries_give_t_intervals_and_pair_by_seed():
    accuracy = {"interactions": [0.80, 0.82, 0.84], "random": [0.70, 0.78, 0.80], "stratified": [0.75, 0.77, 0.79]}
    evaluation = pd.DataFrame([{"method": m, "fraction": 0.5, "seed": s, "holdout_acc": a}
                               for m, values in accuracy.items() for s, a in enumerate(values)])
    table = summarize(evaluation).set_index("method")
    half = stats.t.ppf(0.975, 2) * np.std(accuracy["random"], ddof=1) / np.sqrt(3)
    assert table.loc["random", "mean"] == pytest.approx(np.mean(accuracy["random"]))
    assert table.loc["random", "ci_high"] - table.loc["random", "mean"] == pytest.approx(half)
    paired = paired_differences(evaluation).set_index("method")
    assert set(paired["baseline"]) == {"stratified"}  # the best baseline by mean (0.77 > 0.76)
    diff = np.subtract(accuracy["interactions"], accuracy["stratified"])
    assert paired.loc["interactions", "difference"] == pytest.approx(diff.mean())
    assert paired.loc["interactions", "ci_low"] == pytest.approx(diff.mean())  # constant difference: no spread


@pytest.mark.slow
def test_el2n_scores_mislabelled_examples_highest(tmp_path):
    run = SweepRun(compose_config(TINY + ["dataset.train=200", "model.width=8"]), tmp_path)
    flipped = np.arange(0, 200, 20)
    run.splits.train_y[flipped] = (run.splits.train_y[flipped] + 1) % 10
    scores = el2n_scores(run, num_seeds=2, epochs=4)
    assert scores.shape == (200,)
    assert scores[flipped].mean() > 1.5 * np.delete(scores, flipped).mean()


@pytest.mark.slow
def test_evaluation_retrains_with_a_fixed_step_budget(tmp_path):
    config = compose_config(TINY + ["dataset.train=200", "model.width=8", "train.epochs=10"], tmp_path)
    run_job("sweep.py", *TINY, "dataset.train=200", "model.width=8", "train.epochs=10", "sweep.num_models=1",
            "sweep.models_per_shard=1", f"run_dir={tmp_path}")
    run = SweepRun(config, tmp_path)
    steps = full_data_steps(run)
    assert steps == 63  # 10 epochs of 200 examples in full batches of 32: ceil(2000 / 32)
    keep = pd.DataFrame({"method": ["el2n", "random"], "fraction": [0.5, 0.5], "draw": [0, 0], "size": [100, 100],
                         "players": [list(range(0, 200, 2)), list(range(100))]})
    evaluation = evaluate_keep_sets(run, keep, seeds=1, workers=2, progress=False)
    assert evaluation["steps"].tolist() == [63, 63] and evaluation["seed"].tolist() == [0, 0]
    assert evaluation["holdout_acc"].min() > 0.5 and evaluation["holdout_acc"].nunique() == 2


@pytest.mark.slow
def test_matched_surrogates_need_masks_and_fits_of_each_fraction(tmp_path):
    args = [*TINY, "sweep.alpha=[0.5,0.25]", "sweep.num_models=120", "sweep.models_per_shard=60",
            f"run_dir={tmp_path}", "progress=false"]
    run_job("sweep.py", *args)
    run_job("fit.py", "fit=linear", "fit.alpha=0.5", *args)
    with pytest.raises(PruningError, match=r"fit.alpha=0.25"):
        load_surrogates(tmp_path, {"linear": "linear"}, [0.5, 0.25], "matched")
    with pytest.raises(PruningError, match=r"fraction 0.3 has no masks of matching size.*alpha \[0.5, 0.25\]"):
        load_surrogates(tmp_path, {"linear": "linear"}, [0.5, 0.3], "matched")
    run_job("fit.py", "fit=linear", "fit.alpha=0.25", *args)
    surrogates = load_surrogates(tmp_path, {"linear": "linear"}, [1.0, 0.5, 0.25], "matched")["linear"]
    assert sorted(surrogates) == [0.25, 0.5]  # the full set needs none
    # each fraction's intercept is the mean margin of its own masks: fewer players, lower margins
    assert (surrogates[0.25].constant != surrogates[0.5].constant).all()
    bad = run_job("prune.py", *args, "prune.surrogates=matched", "prune.methods=[linear]", "prune.fractions=[0.5,0.3]",
                  check=False)
    assert bad.returncode != 0 and "no masks of matching size" in bad.stderr


def test_curate_settings_are_checked_in_one_line():
    from datamodels.pruning import CurateSettings

    assert CurateSettings(fraction=1).fraction == 1.0 and isinstance(CurateSettings(fraction=1).fraction, float)
    for setting, message in (({"fraction": 0}, r"curate.fraction=0 must lie in \(0, 1\]"),
                             ({"fraction": "half"}, "curate.fraction='half' must lie in"),
                             ({"method": ""}, "curate.method='' must name a pruning method"),
                             ({"export_arrays": "yes"}, "curate.export_arrays='yes' must be true or false")):
        with pytest.raises(PruningError, match=message):
            CurateSettings(**setting)
    # the job's curate section takes prune.keep_sets, so one override points both stages at a file
    config = compose_config(["prune.keep_sets=elsewhere.parquet"])
    assert CurateSettings.from_config(config["curate"]).keep_sets == "elsewhere.parquet"


@pytest.mark.slow
def test_curate_is_redone_with_force_and_the_old_set_survives_a_failed_rewrite(tmp_path, monkeypatch):
    """jobs/curate.py run twice: refused with the way on (force=true); with force=true the new
    keep-set replaces the old whole, and a rewrite that fails leaves the old one as it was."""
    import json

    from datamodels.sweep.planted import write_planted_sweep
    from datamodels.pruning import PruneSettings, curation, run_prune

    run_dir = tmp_path / "run"
    write_planted_sweep(run_dir, 40, 2, 60, seed=1, progress=False, classes=4, n_mains=5, n_synergy=1,
                        n_redundancy=0, n_triples=0)
    run_prune(run_dir, PruneSettings(methods=["random", "stratified"], fractions=[0.5], draws=1), progress=False)
    args = [f"run_dir={run_dir}", "curate.method=random", "curate.fraction=0.5", f"curate.out={tmp_path / 'set'}"]
    run_job("curate.py", *args)
    first = (tmp_path / "set" / "card.json").read_text()
    again = run_job("curate.py", *args, check=False)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'set'} already holds a curated keep-set: give force=true to replace it, or choose another "
        f"curate.out"]
    other = [a.replace("random", "stratified") for a in args]
    out = run_job("curate.py", *other, "force=true").stdout
    assert out.strip() == f"written: {tmp_path / 'set' / 'keep_set.parquet'}, {tmp_path / 'set' / 'card.json'}"
    card = json.loads((tmp_path / "set" / "card.json").read_text())
    assert card["method"] == "stratified" and json.loads(first)["method"] == "random"
    kept = pd.read_parquet(tmp_path / "set" / "keep_set.parquet")
    keep = pd.read_parquet(run_dir / "prune" / "keep_sets.parquet").set_index("method")
    np.testing.assert_array_equal(kept["player"], keep.loc["stratified", "players"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "set"]  # nothing left beside it

    def fails(path, *a, **k):
        raise OSError("disk full")

    before = {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir()}
    monkeypatch.setattr(curation, "write_atomic", fails)  # the card, the last file, cannot be written
    with pytest.raises(OSError, match="disk full"):
        curation.run_curate(run_dir, curation.CurateSettings("random", 0.5, str(tmp_path / "set")), force=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "set"]
