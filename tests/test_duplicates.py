"""The duplicate ranking (datamodels.pruning.duplicates, jobs/duplicates.py) on planted games whose
duplicate groups are known, and its refusals of runs it cannot read."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from conftest import run_job
from datamodels.pruning import duplicates
from datamodels.views.analysis import RunView, residual_sd
from datamodels.pruning.duplicates import (DuplicatesError, DuplicatesSettings, _residual_pair_part, candidate_groups,
                                   profile_neighbours, read_candidates, read_pairs, redundant_pairs, run_duplicates)
from datamodels.errors import UserError
from datamodels.fit.stage import FitSettings, run_fit
from datamodels.packed import PackedMasks
from datamodels.sweep.planted import planted_game, read_planted_truth, write_planted_sweep
from datamodels.pruning import Surrogate
from datamodels.views.report import write_report
from datamodels.run.folder import RunFolder

DUPLICATES = [[3, 17], [5, 22, 41]]  # planted in every target; every target also gets its own redundant pair
T = 12


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    run = tmp_path_factory.mktemp("planted")
    write_planted_sweep(run, n=60, T=T, num_masks=1000, noise=0.3, progress=False, n_mains=10, n_synergy=1,
                        n_redundancy=1, n_triples=0, duplicates=DUPLICATES, classes=4)
    run_fit(run, FitSettings("proxyspex", workers=1), progress=False)
    return run


def test_planted_duplicates_are_the_or_game_of_their_members():
    game = planted_game(8, n_synergy=0, n_redundancy=0, n_triples=0, n_mains=0, duplicates=[[1, 2, 6]], seed=5)
    sign = game[(1,)]
    for keep in range(1 << 8):  # brute force: the game's value is sign * [any member kept], plus the constant
        kept = {i for i in range(8) if keep >> i & 1}
        value = sum(m for S, m in game.items() if set(S) <= kept)
        assert np.isclose(value - game[()], sign * bool(kept & {1, 2, 6}))
    assert planted_game(12, seed=5) == planted_game(12, seed=5, duplicates=())  # earlier games are unchanged
    with pytest.raises(ValueError, match="disjoint groups of at least 2"):
        planted_game(20, duplicates=[[1, 2], [2, 3]])


def true_fractions(truth: dict, tau: np.ndarray, n: int) -> np.ndarray:
    """[n, n]: every pair's duplicate fraction (datamodels.pruning.duplicates) in the planted spectra."""
    mains, pairs = np.zeros((n, len(truth))), np.zeros((n, n, len(truth)))
    for t, spectrum in truth.items():
        for S, m in spectrum.items():
            if len(S) == 1:
                mains[S[0], t] = m
            elif len(S) == 2:
                pairs[S[0], S[1], t] = pairs[S[1], S[0], t] = m
    g = (mains[:, None, :] + mains[None, :, :]) / 2
    signal = (g**2 / tau**2).sum(2)
    return -(pairs * g / tau**2).sum(2) / np.where(signal > 0, signal, np.inf)


@pytest.mark.slow
def test_the_fractions_match_the_planted_ones_and_the_shared_groups_come_first(planted):
    proc = run_job("duplicates.py", f"run_dir={planted}", "progress=false")
    assert "candidate groups" in proc.stdout
    pairs = read_pairs(planted)
    view = RunView.open(planted)
    truth = true_fractions(read_planted_truth(planted), residual_sd(view, "proxyspex").to_numpy(), view.n)
    a, b = pairs["player_a"].to_numpy(), pairs["player_b"].to_numpy()
    # each candidate's estimate is the planted fraction within the error it states
    assert (abs(pairs["fraction"] - truth[a, b]) < 4 * pairs["se"] + 0.05).all()
    shared = [(3, 17), (5, 22), (5, 41), (22, 41)]  # an OR in every target: its pair cancels its mains entirely
    assert np.allclose(truth[tuple(np.array(shared).T)], 1)
    indexed = pairs.set_index(["player_a", "player_b"])
    assert indexed.loc[shared, "duplicate"].all() and (indexed.loc[shared, "targets"] == T).all()
    summed = redundant_pairs(view).set_index(["player_a", "player_b"])["score"]  # the fit's own view, beside it
    assert np.allclose(indexed["redundancy"], summed.reindex(indexed.index, fill_value=0.0))
    assert (indexed.loc[shared, "redundancy"] > 0).all()
    found = set(indexed.index[indexed["duplicate"]])
    assert all(truth[p] > 0.5 for p in found)  # no false duplicate
    exact = {(i, j) for i, j in zip(*np.nonzero(np.triu(truth > 0.95, 1)))}  # each target's own OR pair too, when
    assert found >= exact  # its players matter to no other target
    # the one-target ORs of players that matter elsewhere cancel half their effect: not duplicates
    assert any(0.3 < truth[p] < 0.7 and not indexed.loc[p, "duplicate"] for p in indexed.index)
    groups = read_candidates(planted)
    members = [sorted(m) for m in groups["members"]]
    assert all(group in members for group in DUPLICATES)  # the players of no other duplicate
    assert sorted(p for m in members for p in m) == sorted({p for pair in found for p in pair})
    assert (groups["score"].diff().dropna() <= 0).all()  # best first
    big = groups[groups["size"] == 3].iloc[0]
    assert sorted(big["members"]) == [5, 22, 41] and big["pairs"] == 3
    # the shared groups are measured on every target: surer than any one-target pair
    assert indexed.loc[shared, "se"].max() < indexed.loc[sorted(found - set(shared)), "se"].min()


def test_residual_part_is_least_squares_on_the_centred_pair_and_clusters_by_mask():
    rng = np.random.default_rng(3)
    m, n, T = 400, 6, 3
    masks = rng.random((m, n)) < 0.5
    margins = rng.normal(size=(T, m)) + masks[:, 0] * masks[:, 1] * np.array([[1.0], [-0.5], [2.0]])
    surrogate = Surrogate.from_terms(n, np.zeros(T), np.ones(T), [0, 1, 2], [[2], [3], [4]], [0.3, 0.2, 0.1])
    a, b = np.array([0, 1]), np.array([1, 4])
    weighted = sparse.csr_matrix(rng.normal(size=(n, T)) * (rng.random((n, T)) < 0.7))  # w_t m_t({i})
    pair_weights = (weighted[a] + weighted[b]).toarray() / 2  # w_t g_t of each pair

    def part(X, Y, mask_id):
        ready = SimpleNamespace(masks=PackedMasks.from_bool(X), target_margins=Y, mask_id=mask_id)
        return _residual_pair_part(ready, np.arange(T), surrogate, a, b, weighted, progress=False)

    cross, variance = part(masks, margins, np.arange(m))
    residual = margins.T - surrogate.predict(masks)
    kept = masks.mean(0)
    for k in range(2):  # brute force: the coefficient of each target's residual on the centred pair feature
        c = (masks[:, a[k]] - kept[a[k]]) * (masks[:, b[k]] - kept[b[k]])
        beta = residual.T @ c / (c @ c)
        assert np.isclose(cross[k], pair_weights[k] @ beta)
        s = residual @ pair_weights[k]
        assert np.isclose(variance[k], np.sum(c**2 * s**2) / (c @ c) ** 2)
    # every model twice (two seeds of one mask, same margins): the same estimate, and no more certainty
    twice = np.repeat(np.arange(m), 2)
    cross2, variance2 = part(masks[twice], margins[:, twice], np.arange(m)[twice][::-1].copy())
    assert np.allclose(cross2, cross) and np.allclose(variance2, variance)


def test_a_fit_of_some_targets_is_measured_on_those(tmp_path):
    run = tmp_path / "run"
    write_planted_sweep(run, n=30, T=8, num_masks=600, noise=0.3, progress=False, n_mains=5, n_synergy=1,
                        n_redundancy=0, n_triples=0, duplicates=[[4, 9]])
    run_fit(run, FitSettings("proxyspex", targets=[1, 4, 6], workers=1), progress=False)
    result = run_duplicates(run, DuplicatesSettings(), progress=False)
    pairs = read_pairs(run).set_index(["player_a", "player_b"])
    assert pairs.loc[(4, 9), "duplicate"] and pairs.loc[(4, 9), "targets"] == 3
    assert abs(pairs.loc[(4, 9), "fraction"] - 1) < 4 * pairs.loc[(4, 9), "se"] + 0.05
    assert read_candidates(run)["members"].tolist()[0] == [4, 9]
    # what the call returns is what it wrote, in the order the stage's result names
    folder = RunFolder(run)
    assert result.written == (folder.duplicate_pairs, folder.duplicate_candidates)
    assert result.outputs["pairs"].equals(read_pairs(run))
    assert result.outputs["candidates"]["members"].tolist() == read_candidates(run)["members"].tolist()


def test_settings_out_of_range_are_refused_in_one_line():
    for setting, message in (({"min_fraction": 1.0}, "duplicates.min_fraction=1.0 must lie in"),
                             ({"min_fraction": "half"}, "duplicates.min_fraction='half' must lie in"),
                             ({"level": 0}, "duplicates.level=0 must"),
                             ({"neighbours": -1}, "duplicates.neighbours=-1 must be a non-negative integer"),
                             ({"neighbours": True}, "duplicates.neighbours=True must be")):
        with pytest.raises(DuplicatesError, match=message):
            DuplicatesSettings(**setting)
    with pytest.raises(UserError, match="duplicates.neighbour is not a setting; did you mean duplicates.neighbours"):
        DuplicatesSettings.from_config({"neighbour": 3})


def test_groups_join_pairs_that_share_players():
    pairs = pd.DataFrame({"player_a": [0, 1, 4, 6], "player_b": [1, 2, 5, 7], "fraction": [0.9, 0.6, 0.8, 0.95],
                          "targets": [3, 2, 1, 1], "duplicate": [True, True, True, False]})
    groups = candidate_groups(pairs, n=8)  # 6-7 is not a duplicate
    assert groups["members"].tolist() == [[4, 5], [0, 1, 2]]
    assert np.allclose(groups["score"], [0.8, 0.75]) and groups["best_pair"].tolist() == [[4, 5], [0, 1]]
    assert groups["targets"].tolist() == [1, 3] and groups["pairs"].tolist() == [1, 2]
    assert candidate_groups(pairs.assign(duplicate=False), n=8).empty


def test_profile_neighbours_are_the_nearest_by_cosine():
    profiles = sparse.csr_matrix(np.array([[1.0, 0, 0], [2.0, 0.1, 0], [0, 1, 0], [0, 0, 1], [0, 0.1, 3], [0, 0, 0]]))
    assert profile_neighbours(profiles, 1).tolist() == [[0, 1], [1, 2], [3, 4]]  # 5 has no profile
    assert profile_neighbours(profiles, 0).shape == (0, 2)


def test_report_shows_the_groups_only_when_ranked(planted, tmp_path):
    run_duplicates(planted, DuplicatesSettings(), progress=False)  # (skipped where the job's test measured them)
    view = RunView.open(planted)
    page = RunFolder(planted).report_page
    html = write_report(view, page).read_text()
    assert "Candidate duplicates" in html and "player 5 (class" in html and "player 3 (class" in html
    RunFolder(planted).duplicate_candidates.rename(tmp_path / "aside.parquet")
    try:
        assert "Candidate duplicates" not in write_report(view, page).read_text()
    finally:
        (tmp_path / "aside.parquet").rename(RunFolder(planted).duplicate_candidates)


@pytest.mark.slow
def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    write_planted_sweep(run, n=20, T=2, num_masks=200, progress=False, n_triples=0)
    out = RunFolder(run).duplicate_candidates
    proc = run_job("duplicates.py", f"run_dir={run}", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "fit the run first" in proc.stderr
    run_fit(run, FitSettings("linear", workers=1), progress=False)
    proc = run_job("duplicates.py", f"run_dir={run}", check=False)
    assert proc.returncode == 1 and "has no proxyspex fit" in proc.stderr
    with pytest.raises(DuplicatesError, match="the linear fit of .* has no pair terms"):
        run_duplicates(run, DuplicatesSettings(engine="linear"))
    proc = run_job("duplicates.py", f"run_dir={run}", "duplicates.min_fraction=2", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "min_fraction=2" in proc.stderr
    assert not out.exists() and not out.parent.exists()


def test_pair_signal_is_the_weighted_square_of_the_mean_main_in_blocks(monkeypatch):
    rng = np.random.default_rng(5)
    n, T = 30, 7
    profiles = sparse.csr_matrix(rng.normal(size=(n, T)) * (rng.random((n, T)) < 0.4))
    weight = rng.random(T) + 0.5
    a, b = np.array([0, 0, 3, 5, 8, 12]), np.array([1, 2, 9, 6, 20, 29])
    monkeypatch.setattr(duplicates, "_CHUNK_CELLS", 8)  # blocks of a few pairs
    signal, reach = duplicates.pair_signal(profiles, weight, a, b)
    g = (profiles[a] + profiles[b]).toarray() / 2
    assert np.allclose(signal, (g**2) @ weight) and np.array_equal(reach, (g != 0).sum(1))
