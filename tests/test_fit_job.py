"""The fit stage: a store of planted games in, faithful interaction tables out (jobs/fit.py)."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import run_job

from datamodels.store import shards as store
from datamodels.fit.faithfulness import noise_ceiling, r2, spearman
from datamodels.fit.stage import fit_and_evaluate, FitSettings, run_fit, select_targets
from datamodels.interactions import heldout_split, mobius_predict
from datamodels.sweep.planted import planted_game, write_planted_sweep
from datamodels.run.folder import RunFolder, shard_path
from datamodels.store.shards import ModelRecord, StoreError, write_shard

N, MASKS, REPEATS, PER_SHARD = 24, 400, 2, 200
GAMES = [planted_game(N, n_synergy=1, n_redundancy=1, n_triples=0, seed=s) for s in range(3)]


def write_sweep(run_dir, constant_target=None):
    """A sweep whose target t is planted game t plus seed noise: 400 masks x 2 repeats."""
    rng = np.random.default_rng(0)
    masks = rng.random((MASKS, N)) < 0.5
    signal = np.stack([mobius_predict(g, masks) for g in GAMES], axis=1)
    num_models = MASKS * REPEATS
    meta = {"format": store.FORMAT, "fingerprint": "planted", "n": N, "T": len(GAMES),
            "design": "bernoulli", "alpha": 0.5, "sweep_seed": 0, "repeats": REPEATS,
            "models_per_shard": PER_SHARD, "num_models": num_models, "config_hash": "h",
            "version": "test"}
    RunFolder(run_dir).check_sweep(meta)
    records = []
    for i in range(num_models):
        margins = signal[i // REPEATS] + rng.normal(0, 0.5 * signal.std(axis=0))
        if constant_target is not None:
            margins[constant_target] = 1.0
        records.append(ModelRecord(i, i // REPEATS, i % REPEATS, i, masks[i // REPEATS],
                                   margins.astype(np.float32), 0.9, 0.1))
    for shard in range(num_models // PER_SHARD):
        write_shard(shard_path(run_dir / "shards", shard),
                    records[shard * PER_SHARD:(shard + 1) * PER_SHARD], meta | {"shard": shard})


@pytest.mark.slow
def test_job_writes_both_methods_side_by_side(tmp_path):
    write_sweep(tmp_path)
    out = run_job("fit.py", f"run_dir={tmp_path}", "fit.workers=2", "progress=false").stdout
    assert "proxyspex: 3 targets, median held-out R^2" in out
    assert "strongest synergy: players" in out and "strongest redundancy: players" in out
    # The first table as a release before the tested and shrunk columns wrote it (its metadata kept):
    # the next fit's merge gives its rows the columns, unshrunk, ProxySPEX's interactions tested (it
    # kept no other then) and nothing else.
    path = tmp_path / "fit" / "interactions.parquet"
    before = pq.read_table(path)
    pq.write_table(before.drop(["tested", "shrunk"]), path)
    run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "fit.workers=1", "progress=false")
    metrics = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet")
    inter = pd.read_parquet(path)
    assert list(inter.columns) == ["target", "members", "order", "mobius", "kind", "engine", "tested", "shrunk"]
    assert inter["shrunk"].equals(inter["mobius"])
    assert inter.loc[inter["order"] > 1, "tested"].groupby(inter["engine"]).all().to_dict() == {"proxyspex": True}
    assert not inter.loc[(inter["order"] == 1) | (inter["engine"] == "linear"), "tested"].any()
    pq.write_table(before, path)
    run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "fit.workers=1", "progress=false", "force=true")
    inter = pd.read_parquet(path)
    assert inter.loc[inter["order"] > 1, "tested"].groupby(inter["engine"]).all().to_dict() == {"proxyspex": True}
    assert not inter.loc[(inter["order"] == 1) | (inter["engine"] == "linear"), "tested"].any()
    assert sorted(metrics.columns) == sorted(["target", "engine", "r2", "spearman", "noise_ceiling",
                                              "r2_fraction_of_ceiling", "models_used", "seconds", "working_set",
                                              "kkt_added", "penalty_at_floor", "tested_zeroed"])
    # n = 24: nothing screened
    assert (metrics["working_set"] == N).all() and (metrics["kkt_added"] == 0).all()
    assert not metrics["penalty_at_floor"].any()
    assert set(zip(metrics["engine"], metrics["target"])) == {(m, t) for m in ("linear", "proxyspex")
                                                              for t in range(3)}
    by = metrics.set_index(["engine", "target"])
    for t in range(3):
        # Noise sd is half the signal's: the ceiling is about 0.8, and ProxySPEX gets near it.
        assert by.loc[("proxyspex", t), "noise_ceiling"] == pytest.approx(0.8, abs=0.08)
        assert by.loc[("proxyspex", t), "r2"] >= by.loc[("linear", t), "r2"]
        assert by.loc[("proxyspex", t), "r2_fraction_of_ceiling"] > 0.85
    assert (metrics["models_used"] < MASKS * REPEATS).all() and (metrics["seconds"] > 0).all()
    proxy = inter[(inter["engine"] == "proxyspex") & (inter["order"] == 2)]
    for t, game in enumerate(GAMES):
        rows = proxy[proxy["target"] == t]
        found = dict(zip(rows["members"].map(tuple), rows["kind"]))
        planted = [k for k in game if len(k) == 2]
        assert set(planted) <= set(found)
        assert sorted(found[k] for k in planted) == ["redundancy", "synergy"]


def test_a_subset_of_targets_replaces_only_its_rows(tmp_path):
    write_sweep(tmp_path)
    run_fit(tmp_path, FitSettings("linear", targets=[0, 2], workers=1), progress=False)
    before = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet")
    run_fit(tmp_path, FitSettings("linear", start=2, workers=1), progress=False)
    after = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet")
    assert list(before["target"]) == [0, 2] and list(after["target"]) == [0, 2]
    assert after.loc[0, "seconds"] == before.loc[0, "seconds"]
    assert after.loc[1, "seconds"] != before.loc[1, "seconds"]
    assert select_targets(tmp_path, start=1) == [1, 2]
    with pytest.raises(ValueError, match="fit.targets and fit.start/fit.stop both set"):
        select_targets(tmp_path, targets=[1], stop=2)
    with pytest.raises(ValueError, match=r"fit.targets: \[3\] outside 0..2 \(the sweep has T=3 targets\)"):
        select_targets(tmp_path, targets=[0, 3])
    with pytest.raises(ValueError, match=r"fit.start=2, fit.stop=5: the range must lie in 0..3"):
        select_targets(tmp_path, start=2, stop=5)


@pytest.mark.slow
def test_bad_runs_fail_clearly_and_write_nothing(tmp_path):
    write_sweep(tmp_path, constant_target=1)
    proc = run_job("fit.py", f"run_dir={tmp_path}", "fit.method=lasso", check=False)
    assert proc.returncode != 0 and "unknown fit engine 'lasso'" in proc.stderr
    assert "fit.method is renamed fit.engine" in proc.stderr  # the old key still works, one release
    with pytest.raises(ValueError, match="target 1: ProxySPEX.fit: y is constant"):
        run_fit(tmp_path, FitSettings("proxyspex", workers=1), progress=False)
    assert not (tmp_path / "fit").exists()
    with pytest.raises(StoreError, match=r"holds no sweep \(no run.json\)"):
        run_fit(tmp_path / "nowhere", FitSettings("linear", workers=1), progress=False)


@pytest.mark.slow
def test_a_sweep_too_small_to_fit_says_how_many_models_it_needs(tmp_path):
    write_planted_sweep(tmp_path, 10, 1, 20, progress=False, n_triples=0)
    proc = run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "progress=false", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "fit=linear needs at least 20 models to fit on" in proc.stderr and "sweep.num_models" in proc.stderr


def test_heldout_split_keeps_repeats_together_and_is_stable():
    ids = np.repeat(np.arange(5000), 2)
    held = heldout_split(ids, 0.2, seed=7)
    assert (held[::2] == held[1::2]).all()
    assert held.mean() == pytest.approx(0.2, abs=0.02)
    assert (heldout_split(ids[:4000], 0.2, seed=7) == held[:4000]).all()  # stable as the sweep grows
    assert not (heldout_split(ids, 0.2, seed=8) == held).all()
    with pytest.raises(ValueError, match=r"heldout_fraction must be in \(0, 1\); got 1.0"):
        heldout_split(ids, 1.0, seed=0)


def test_fit_and_evaluate_without_repeats():
    rng = np.random.default_rng(4)
    X = rng.random((300, N)) < 0.5
    y = mobius_predict(GAMES[0], X) + rng.normal(0, 0.3, 300)
    inter, metrics = fit_and_evaluate(X, np.stack([y, -y], axis=1), np.arange(300), "linear",
                                      target_ids=[5, 9], progress=False)
    assert list(metrics["target"]) == [5, 9] and metrics["noise_ceiling"].isna().all()
    assert set(inter["target"]) == {5, 9} and set(inter["kind"]) == {"main"}


def test_metrics():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2(y, y) == 1.0 and r2(y, np.full(4, y.mean())) == 0.0
    assert spearman(y, y**3) == pytest.approx(1.0) and spearman(y, -y) == pytest.approx(-1.0)
    assert spearman(y, np.full(4, 2.5)) == 0.0
    rng = np.random.default_rng(0)
    means = rng.normal(0, 1, 4000)
    ids = np.repeat(np.arange(4000), 3)
    y = means[ids] + rng.normal(0, 1, ids.size)
    # Signal variance 1, noise variance 1: the true mean explains half of a single repeat.
    assert noise_ceiling(y, ids) == pytest.approx(0.5, abs=0.03)
    assert np.isnan(noise_ceiling(y[::3], ids[::3]))


def test_learning_curve_uses_the_first_models_and_the_same_heldout_models():
    rng = np.random.default_rng(5)
    X = rng.random((1500, N)) < 0.5
    y = mobius_predict(GAMES[1], X) + rng.normal(0, 0.5, 1500)
    held = heldout_split(np.arange(1500), 0.2, seed=0)
    scores = {}
    for budget in (40, 1000):
        _, metrics = fit_and_evaluate(X, y[:, None], np.arange(1500), "proxyspex", progress=False,
                                      fit_models=budget)
        assert metrics["models_used"].item() == budget
        scores[budget] = metrics["r2"].item()
    # The held-out models are the same for both budgets, so more models must fit better.
    assert scores[1000] > scores[40] + 0.1
    assert scores[1000] > 1 - 0.5**2 / np.var(y[held]) - 0.1  # near the noise ceiling
    with pytest.raises(ValueError, match=f"fit_models=2000: the fit split has {(~held).sum()} models"):
        fit_and_evaluate(X, y[:, None], np.arange(1500), "linear", progress=False, fit_models=2000)


@pytest.mark.slow
def test_job_screens_a_wide_planted_sweep_and_finds_its_pairs(tmp_path):
    # 600 players, 40 with effects per target: the fit works on working sets of 80, reads the
    # memory-mapped layout that collect wrote, and still finds every planted pair.
    from datamodels.sweep.planted import read_planted_truth, write_planted_sweep

    write_planted_sweep(tmp_path, n=600, T=3, num_masks=1500, repeats=2, noise=0.3, models_per_shard=1000,
                        progress=False, n_synergy=1, n_redundancy=1, n_triples=0, n_mains=40)
    run_job("collect.py", f"run_dir={tmp_path}", "progress=false")
    assert (tmp_path / "fit_ready" / "masks.npy").exists()
    run_job("fit.py", f"run_dir={tmp_path}", "fit.params.screen_k=80", "fit.workers=2", "progress=false")
    metrics = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet")
    inter = pd.read_parquet(tmp_path / "fit" / "interactions.parquet")
    assert (metrics["working_set"] >= 80).all() and (metrics["working_set"] < 600).all()
    assert (metrics["r2_fraction_of_ceiling"] > 0.9).all()
    for target, truth in read_planted_truth(tmp_path).items():
        rows = inter[(inter["target"] == target) & (inter["order"] == 2)]
        found = dict(zip(rows["members"].map(lambda k: tuple(int(i) for i in k)), rows["mobius"]))
        for pair, value in truth.items():
            if len(pair) == 2:
                assert pair in found and np.sign(found[pair]) == np.sign(value)
    proc = run_job("fit.py", f"run_dir={tmp_path}", "fit.params.screen_k=601", check=False)
    assert proc.returncode != 0 and "fit.params.screen_k=601 must be an integer in 1..600" in proc.stderr


@pytest.mark.slow
def test_the_fit_job_projects_its_time_from_its_first_target(tmp_path):
    """One line, once the first target is fitted and before the rest: targets x that target's time
    over the workers. A part (SLURM) says it too; a fit of one target has nothing left to project."""
    import re

    write_sweep(tmp_path)
    out = run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "fit.workers=1", "progress=false").stdout
    said = [line for line in out.splitlines() if line.startswith("fit=linear: ")]
    assert len(said) == 1, out  # one line (the layout's build, before it, says its own)
    found = re.fullmatch(r"fit=linear: 3 targets on (\d+) models of 24 players; the first took (\d+\.\d) s, so about "
                         r"(\d+) s in all with 1 worker\(s\)", said[0])
    assert found, said[0]
    metrics = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet")
    assert int(found[1]) == metrics["models_used"].iloc[0]  # the fit split: the held-out models are not fitted
    first = metrics.sort_values("target")["seconds"].iloc[0]
    assert found[2] == f"{first:.1f}" and found[3] == f"{first * 3:.0f}"
    assert "linear: 3 targets, median held-out R^2" in out
    part = run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "fit.part=0", "fit.parts=2", "progress=false").stdout
    assert part.startswith("fit=linear: 2 targets on ")
    one = run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "fit.targets=[1]", "force=true",
                  "progress=false").stdout
    assert "targets on" not in one


def test_projected_time_reads_in_the_unit_of_its_size():
    from datamodels.fit.stage import projected_time

    assert projected_time("proxyspex", 170.0, 60, 2, 240_000, 50_000) == (
        "fit=proxyspex: 60 targets on 240,000 models of 50,000 players; the first took 170.0 s, so about 85 min in "
        "all with 2 worker(s)")
    assert projected_time("proxyspex", 170.0, 100, 2, 240_000, 50_000).endswith(
        "so about 2.4 h in all with 2 worker(s)")
    assert projected_time("linear", 2.0, 30, 1, 800, 24).endswith("so about 60 s in all with 1 worker(s)")
    assert projected_time("linear", 2.0, 100, 2, 800, 24).endswith("so about 2 min in all with 2 worker(s)")
