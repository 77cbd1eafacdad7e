"""Planted sweeps against their ground truth: exact games, noise of the stated size, genuine shards."""

import itertools
import subprocess
import sys

import numpy as np
import pytest

from datamodels.interactions import mobius_predict
from datamodels.sweep.masks import MaskDesign
from datamodels.sweep.planted import bernoulli_sd, planted_game, read_planted_truth, write_planted_sweep
from datamodels.store.shards import StoreError, collect_run, load_sweep

N, T, MASKS, REPEATS, PER_SHARD = 60, 4, 600, 2, 500
GAME = {"n_mains": 15, "n_synergy": 1, "n_redundancy": 1, "n_triples": 1}


def planted(run_dir, noise=0.5, **kwargs):
    return write_planted_sweep(run_dir, N, T, MASKS, repeats=REPEATS, noise=noise, models_per_shard=PER_SHARD,
                               seed=7, progress=False, **GAME, **kwargs)


def residuals(run_dir):
    sweep, truth = load_sweep(run_dir), read_planted_truth(run_dir)
    signal = np.stack([mobius_predict(truth[t], sweep.masks) for t in range(T)], axis=1)
    return sweep, truth, signal, sweep.margins - signal


def test_n_mains_puts_mains_on_that_many_players_beside_the_planted_groups():
    game = planted_game(1000, seed=4, n_mains=30)
    groups = [k for k in game if len(k) > 1]
    members = {i for k in groups for i in k}
    assert len(groups) == 5 and len(members) == 11
    mains = {k[0] for k in game if len(k) == 1}
    assert members <= mains and 30 <= len(mains) <= 30 + 11
    assert game == planted_game(1000, seed=4, n_mains=30)
    assert len([k for k in planted_game(50, seed=4) if len(k) == 1]) == 50  # None: every player
    with pytest.raises(ValueError, match="n_mains=51 must lie in 0..50"):
        planted_game(50, n_mains=51)


@pytest.mark.parametrize("alpha", [0.3, 0.5])
def test_bernoulli_sd_is_exact_against_every_mask(alpha):
    n = 12
    game = planted_game(n, n_synergy=1, n_redundancy=1, n_triples=1, main_sd=0.5, seed=2)
    X = np.array(list(itertools.product([0, 1], repeat=n)), dtype=bool)
    p = alpha ** X.sum(1) * (1 - alpha) ** (n - X.sum(1))
    f = mobius_predict(game, X)
    assert bernoulli_sd(game, alpha) == pytest.approx(np.sqrt(p @ (f - p @ f) ** 2), rel=1e-12)


def test_noise_free_margins_are_the_planted_games_on_the_design_masks(tmp_path):
    planted(tmp_path, noise=0.0)
    sweep, truth, signal, residual = residuals(tmp_path)
    design = MaskDesign("bernoulli", N, 0.5, 7)
    assert sweep.report.complete and sweep.masks.shape == (MASKS * REPEATS, N)
    for i in (0, 1, 599, 1000, 1199):
        np.testing.assert_array_equal(sweep.masks[i], design.mask(i // REPEATS))
    np.testing.assert_allclose(sweep.margins, signal, rtol=1e-6, atol=1e-5)
    for t in range(T):
        assert {len(k) for k in truth[t]} == {0, 1, 2, 3} and len(truth[t]) >= 15


def test_seed_noise_has_the_stated_sd_and_differs_between_repeats(tmp_path):
    planted(tmp_path, noise=0.5)
    sweep, truth, signal, residual = residuals(tmp_path)
    np.testing.assert_array_equal(sweep.mask_id, np.arange(MASKS * REPEATS) // REPEATS)
    np.testing.assert_array_equal(sweep.packed_masks[0::2], sweep.packed_masks[1::2])  # repeats share the mask
    assert (sweep.margins[0::2] != sweep.margins[1::2]).all()  # ... and not the noise
    assert len(np.unique(sweep.seed)) == len(sweep.seed)
    for t in range(T):
        sd = 0.5 * bernoulli_sd(truth[t], 0.5)
        r = residual[:, t]
        assert r.std() == pytest.approx(sd, rel=0.08)
        assert abs(r.mean()) < 4 * sd / np.sqrt(len(r))
        assert abs(np.corrcoef(r, signal[:, t])[0, 1]) < 0.1
        # independent draws: the difference of two repeats has sd sqrt(2) * sd
        assert (r[0::2] - r[1::2]).std() == pytest.approx(np.sqrt(2) * sd, rel=0.1)
        # the stated sd is that of the game over the sweep's own masks
        assert signal[:, t].std() == pytest.approx(sd / 0.5, rel=0.1)


def test_resume_writes_only_missing_shards_and_identical_files(tmp_path):
    assert [p.name for p in planted(tmp_path)] == ["shard-000000.parquet", "shard-000001.parquet",
                                                   "shard-000002.parquet"]
    shards = sorted((tmp_path / "shards").iterdir())
    before = {p.name: p.read_bytes() for p in shards + [tmp_path / "planted" / "truth.parquet"]}
    kept = shards[0].stat().st_mtime_ns
    shards[1].unlink()
    assert [p.name for p in planted(tmp_path)] == ["shard-000001.parquet"]
    assert shards[0].stat().st_mtime_ns == kept
    after = {p.name: p.read_bytes() for p in sorted((tmp_path / "shards").iterdir())
             + [tmp_path / "planted" / "truth.parquet"]}
    assert after == before
    assert planted(tmp_path) == []
    run, report = collect_run(tmp_path)
    assert report.complete and run["fingerprint"].startswith("planted-") and run["num_models"] == MASKS * REPEATS


def test_other_settings_are_refused_in_the_same_run_folder(tmp_path):
    planted(tmp_path)
    with pytest.raises(StoreError, match="run.json belongs to a different sweep: fingerprint="):
        planted(tmp_path, noise=0.3)
    with pytest.raises(ValueError, match="unknown game settings"):
        write_planted_sweep(tmp_path / "x", N, T, MASKS, strenght=2.0)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_the_command_line_writes_a_sweep_and_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "datamodels.sweep.planted", "--run-dir", str(tmp_path / "run"),
                          "--n", "30", "--targets", "3", "--masks", "50", "--repeats", "2", "--n-mains", "5",
                          "--models-per-shard", "40"], capture_output=True, text=True, check=True).stdout
    assert "3 shards written, 0 already present (100 models, n=30, T=3)" in out
    assert load_sweep(tmp_path / "run").margins.shape == (100, 3)


@pytest.mark.slow
def test_tail_sd_gives_every_player_a_faint_main_on_top_of_the_same_game(tmp_path):
    plain = planted_game(400, seed=3, n_mains=20)
    tailed = planted_game(400, seed=3, n_mains=20, tail_sd=0.01)
    assert len([k for k in tailed if len(k) == 1]) == 400
    assert {k: v for k, v in tailed.items() if len(k) != 1} == {k: v for k, v in plain.items() if len(k) != 1}
    tail = np.array([tailed[(i,)] - plain.get((i,), 0.0) for i in range(400)])
    assert 0.008 < tail.std() < 0.012 and np.all(tail != 0)
    with pytest.raises(ValueError, match="tail_sd=-1"):
        planted_game(40, tail_sd=-1)
    # The sweep and the command line take it, and a tail makes another sweep.
    planted(tmp_path / "a", noise=0.0, tail_sd=0.01)
    sweep, truth, signal, residual = residuals(tmp_path / "a")
    assert all(len([k for k in truth[t] if len(k) == 1]) == N for t in range(T))
    np.testing.assert_allclose(residual, 0.0, atol=1e-5)
    planted(tmp_path / "b")
    with pytest.raises(StoreError, match="fingerprint="):
        planted(tmp_path / "b", tail_sd=0.01)
    out = subprocess.run([sys.executable, "-m", "datamodels.sweep.planted", "--run-dir", str(tmp_path / "c"), "--n", "30",
                          "--targets", "2", "--masks", "20", "--n-mains", "5", "--tail-sd", "0.02"],
                         capture_output=True, text=True, check=True).stdout
    assert "20 models, n=30, T=2" in out
    assert len([k for k in read_planted_truth(tmp_path / "c")[1] if len(k) == 1]) == 30


@pytest.mark.slow
def test_the_release_writer_says_its_size_first_and_its_folder_reads_as_the_truth(tmp_path):
    """python -m datamodels.sweep.planted --release DIR: one line with the size before writing; then
    read_planted_truth(DIR) reads the truth it wrote beside the .npy files."""
    release = tmp_path / "release"
    out = subprocess.run([sys.executable, "-m", "datamodels.sweep.planted", "--release", str(release), "--n", "30",
                          "--targets", "4", "--masks", "25", "--n-mains", "10"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    # 25 x 30 bytes of masks, 25 x 4 float16 margins, 30 int64 labels, 3 headers, 32 bytes a truth row of 4 x (10 + 20)
    assert out[0] == f"{release}: writing the planted release (25 models x 30 players, 4 targets): 5.4 kB"
    assert out[1].startswith(f"{release}: train_masks_50pct.npy")
    arrays = sum((release / name).stat().st_size for name in ("train_masks_50pct.npy", "test_margins_50pct.npy",
                                                              "labels.npy"))
    assert arrays == 3 * 128 + 25 * 30 + 2 * 25 * 4 + 8 * 30  # the estimate's arrays are the files' exact sizes
    assert sum(p.stat().st_size for p in release.iterdir()) <= 5414  # and the truth stays within its share
    truth = read_planted_truth(release)
    assert truth == read_planted_truth(release / "truth.parquet") and sorted(truth) == [0, 1, 2, 3]
    with pytest.raises(StoreError, match=r"holds no planted truth: neither .*planted/truth.parquet \(a planted run "
                                         r"folder\) nor .*truth.parquet \(a planted release\)"):
        read_planted_truth(tmp_path)


def test_the_release_writer_refuses_a_disk_without_the_space(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    from datamodels import tables
    from datamodels.sweep import planted

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(tables.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(SystemExit) as exit_:
        planted.main(["--release", str(tmp_path / "release"), "--n", "30", "--targets", "4", "--masks", "25",
                      "--n-mains", "10"])
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{tmp_path / 'release'}: writing the planted release (25 models x 30 players, "
                                f"4 targets): 5.4 kB"]
    assert err.splitlines() == [f"error: the planted release (25 models x 30 players, 4 targets) needs 5.4 kB and "
                                f"{tmp_path} has 1.0 kB free: free some space or write it elsewhere"]
    assert not (tmp_path / "release").exists()
    assert shutil.disk_usage is tables.shutil.disk_usage  # the one the writer asks


def test_sizes_read_as_a_person_says_them():
    from datamodels.sweep.planted import planted_release_bytes
    from datamodels.tables import size_text

    assert [size_text(b) for b in (512, 12_345, 310e6, 4.9e9, 123e9)] == ["512 B", "12.3 kB", "310 MB", "4.9 GB",
                                                                           "123 GB"]
    # the README's command: 100,000 models of 50,000 players, 1,000 targets, 100 mains a target
    assert size_text(planted_release_bytes(50_000, 1_000, 100_000, n_mains=100)) == "5.2 GB"
