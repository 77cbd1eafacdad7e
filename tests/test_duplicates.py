"""The duplicate ranking (datamodels.duplicates, jobs/duplicates.py) on planted games whose
duplicate groups are known, and its refusals of runs it cannot read."""

import numpy as np
import pandas as pd
import pytest

from conftest import run_job
from datamodels.analysis import RunView
from datamodels.duplicates import DuplicatesError, candidate_groups, read_candidates, redundant_pairs, run_duplicates
from datamodels.fitting import FitSettings, run_fit
from datamodels.planted import planted_game, read_planted_truth, write_planted_sweep
from datamodels.report import write_report
from datamodels.run_folder import RunFolder

DUPLICATES = [[3, 17], [5, 22, 41]]  # planted in every target; every target also gets its own redundant pair
T = 12


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    run = tmp_path_factory.mktemp("planted")
    write_planted_sweep(run, n=60, T=T, num_masks=1000, noise=0.3, progress=False, n_mains=10, n_synergy=1,
                        n_redundancy=1, n_triples=0, duplicates=DUPLICATES, classes=4)
    run_fit(run, FitSettings("proxyspex"), progress=False)
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


def test_ranking_puts_the_planted_groups_first(planted, capsys):
    proc = run_job("duplicates.py", f"run_dir={planted}", "progress=false")
    assert "candidate groups" in proc.stdout
    groups = read_candidates(planted)
    assert [sorted(m) for m in groups["members"][:2]] == sorted(DUPLICATES, key=len, reverse=True)
    assert (groups["score"].diff().dropna() <= 0).all()  # best first
    assert list(groups["size"][:2]) == [3, 2] and list(groups["pairs"][:2]) == [3, 1]
    # every planted pair is redundant in most targets, and outweighs every pair planted in one target
    pairs = redundant_pairs(RunView.open(planted)).set_index(["player_a", "player_b"])
    planted_pairs = [(3, 17), (5, 22), (5, 41), (22, 41)]
    assert (pairs.loc[planted_pairs, "targets"] >= 0.8 * T).all()
    others = pairs.drop(index=planted_pairs)
    assert pairs.loc[planted_pairs, "score"].min() > 3 * others["score"].max()
    truth = read_planted_truth(planted)
    one_target = {S for spectrum in truth.values() for S, m in spectrum.items()
                  if len(S) == 2 and S not in planted_pairs and m * (spectrum[(S[0],)] + spectrum[(S[1],)]) < 0}
    assert len(one_target & set(others.index)) >= 0.8 * len(one_target)  # found, and ranked below


def test_groups_join_pairs_that_share_players():
    pairs = pd.DataFrame({"player_a": [0, 1, 4, 6], "player_b": [1, 2, 5, 7], "score": [5.0, 4.0, 2.0, 0.5],
                          "targets": [3, 2, 1, 1]})
    groups = candidate_groups(pairs, n=8, min_score=1.0)  # 6-7 is below the score of an edge
    assert groups["members"].tolist() == [[0, 1, 2], [4, 5]]
    assert groups["score"].tolist() == [9.0, 2.0] and groups["best_pair"].tolist() == [[0, 1], [4, 5]]
    assert groups["targets"].tolist() == [3, 1]
    assert candidate_groups(pairs, n=8, min_score=10.0).empty


def test_report_shows_the_groups_only_when_ranked(planted, tmp_path):
    view = RunView.open(planted)
    page = RunFolder(planted).report_page
    html = write_report(view, page).read_text()
    assert "Candidate duplicates" in html and "player 5 (class" in html and "player 3 (class" in html
    RunFolder(planted).duplicate_candidates.rename(tmp_path / "aside.parquet")
    try:
        assert "Candidate duplicates" not in write_report(view, page).read_text()
    finally:
        (tmp_path / "aside.parquet").rename(RunFolder(planted).duplicate_candidates)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    write_planted_sweep(run, n=20, T=2, num_masks=200, progress=False, n_triples=0)
    out = RunFolder(run).duplicate_candidates
    proc = run_job("duplicates.py", f"run_dir={run}", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "fit the run first" in proc.stderr
    run_fit(run, FitSettings("linear"), progress=False)
    proc = run_job("duplicates.py", f"run_dir={run}", check=False)
    assert proc.returncode == 1 and "has no proxyspex fit" in proc.stderr
    with pytest.raises(DuplicatesError, match="the linear fit of .* has no pair terms"):
        run_duplicates(run, method="linear")
    with pytest.raises(DuplicatesError, match="duplicates.min_score=0"):
        run_duplicates(run, min_score=0)
    assert not out.exists() and not out.parent.exists()
