"""The TRAK adapter (datamodels.fit.trak) against TRAK computed by hand, and its player sums."""

import builtins

import numpy as np
import pytest
import torch
from torch import nn

from datamodels.errors import UserError
from datamodels.fit.trak import TrakSettings, calibrate, player_weights, trak_scores

pytest.importorskip("dattri", reason="the optional extra 'trak'")


def tiny_problem(seed=0, n_train=40, n_target=5):
    """A 2-layer MLP (3 -> 3 -> 3 classes: 24 parameters, fewer than the 40 training points, so
    Phi^T Phi is invertible without projection) and two checkpoints of it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_target, 3, generator=g)
    y = torch.randint(0, 3, (n_train + n_target,), generator=g)
    model = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
    checkpoints = []
    for k in range(2):
        torch.manual_seed(seed + k)
        net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3))
        checkpoints.append({name: p.detach().clone() for name, p in net.state_dict().items()})
    return model, checkpoints, x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def flat_gradient(model, fn) -> np.ndarray:
    model.zero_grad()
    fn().backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double().numpy()


def brute_force_trak(model, checkpoints, train_x, train_y, target_x, target_y) -> np.ndarray:
    """TRAK (Park et al. 2023, no projection): per checkpoint, gradients one example at a time of
    log(p/(1-p)) (training) and of the margin (targets); ``g_t (Phi^T Phi)^{-1} Phi^T``,
    averaged over checkpoints, times the checkpoint-averaged ``1 - p_i``."""
    kernels, residuals = [], []
    model, train_x, target_x = model.double(), train_x.double(), target_x.double()
    for state in checkpoints:
        model.load_state_dict(state)
        phi, q = [], []
        for x, y in zip(train_x, train_y):
            def train_output(x=x, y=y):
                z = model(x[None])[0]
                return z[y] - torch.logsumexp(torch.cat([z[:y], z[y + 1:]]), 0)
            phi.append(flat_gradient(model, train_output))
            with torch.no_grad():
                q.append(1.0 - torch.softmax(model(x[None])[0].double(), 0)[y].item())
        targets = []
        for x, y in zip(target_x, target_y):
            def margin(x=x, y=y):
                z = model(x[None])[0]
                return z[y] - torch.cat([z[:y], z[y + 1:]]).max()
            targets.append(flat_gradient(model, margin))
        phi, targets = np.array(phi), np.array(targets)
        kernels.append(targets @ np.linalg.solve(phi.T @ phi, phi.T))
        residuals.append(q)
    return np.mean(kernels, 0) * np.mean(residuals, 0)[None, :]


def test_adapter_matches_trak_by_hand():
    model, checkpoints, train_x, train_y, target_x, target_y = tiny_problem()
    scores = trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_type="identity",
                         batch_size=7)
    expected = brute_force_trak(model, checkpoints, train_x, train_y, target_x, target_y)
    assert scores.shape == (5, 40)
    # both in float64: they agree to ~1e-10 of the scores' scale; 1e-6 leaves room for BLAS orders
    tolerance = 1e-6 * np.abs(expected).max()
    assert np.allclose(scores, expected, rtol=1e-6, atol=tolerance)
    # a wrong output function or average moves them by far more
    assert not np.allclose(scores, expected * 1.001, rtol=1e-6, atol=tolerance)


def test_progress_false_silences_dattris_bars(capsys):
    import dattri.algorithm.trak as module

    model, checkpoints, train_x, train_y, target_x, target_y = tiny_problem()
    bar = module.tqdm
    quiet = trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_type="identity",
                        progress=False)
    assert "calculating gradient" not in capsys.readouterr().err and module.tqdm is bar  # restored after
    trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_type="identity")
    assert "calculating gradient" in capsys.readouterr().err
    assert np.array_equal(quiet, trak_scores(model, checkpoints, train_x, train_y, target_x, target_y,
                                             proj_type="identity", progress=False))


def test_random_projection_at_full_rank_gives_the_same_scores():
    """A square Gaussian projection is invertible: the scores do not depend on it."""
    model, checkpoints, train_x, train_y, target_x, target_y = tiny_problem(seed=1)
    projected = trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_dim=24, seed=3)
    plain = trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_type="identity")
    assert np.allclose(projected, plain, rtol=1e-6, atol=1e-6 * np.abs(plain).max())
    narrower = trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_dim=12, seed=3)
    assert not np.allclose(narrower, plain, rtol=1e-2, atol=1e-2 * np.abs(plain).max())


def test_projection_wider_than_the_training_set_is_refused():
    model, checkpoints, train_x, train_y, target_x, target_y = tiny_problem()
    with pytest.raises(UserError, match="trak.proj_dim=64 is not below the 40 training examples"):
        trak_scores(model, checkpoints, train_x, train_y, target_x, target_y, proj_dim=64)


def test_settings_are_checked_in_one_line():
    from conftest import compose_config

    assert TrakSettings(**compose_config()["trak"]) == TrakSettings()
    with pytest.raises(UserError, match="trak.proj_type='sjlt'; choose one of normal"):
        TrakSettings(proj_type="sjlt")
    with pytest.raises(UserError, match="trak.models=0 must be a positive integer"):
        TrakSettings(models=0)


def test_player_weights_sum_the_examples_of_each_player():
    scores = np.arange(12, dtype=float).reshape(2, 6)  # 2 targets x 6 examples
    groups = np.array([2, 0, 2, 1, 0, 2])
    weights = player_weights(scores, groups, 4)
    assert weights.shape == (2, 4)
    assert np.array_equal(weights[0], [1 + 4, 3, 0 + 2 + 5, 0])
    assert np.array_equal(weights[1], [7 + 10, 9, 6 + 8 + 11, 0])
    with pytest.raises(UserError, match="player ids in 0..3"):
        player_weights(scores, np.array([0, 1, 2, 3, 4, 0]), 4)


def test_calibration_is_least_squares_per_target():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(50, 3))
    margins = raw * np.array([2.0, -1.0, 0.0]) + np.array([1.0, 0.5, 3.0])
    slope, intercept = calibrate(raw, margins)
    assert np.allclose(slope, [2.0, -1.0, 0.0]) and np.allclose(intercept, [1.0, 0.5, 3.0])


def test_missing_dattri_is_one_line_naming_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_dattri(name, *args, **kwargs):
        if name.startswith("dattri"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dattri)
    model, checkpoints, train_x, train_y, target_x, target_y = tiny_problem()
    with pytest.raises(UserError) as err:
        trak_scores(model, checkpoints, train_x, train_y, target_x, target_y)
    assert "'trak'" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_trak_job_writes_a_fit_that_the_trak_pruning_method_reads(tmp_path):
    from conftest import TINY, run_job
    from datamodels.pruning import PruneSettings
    from datamodels.run.folder import RunFolder
    from datamodels.tables import read_frame

    run = [*TINY, "sweep.num_models=30", "sweep.models_per_shard=15", f"run_dir={tmp_path / 'run'}"]
    run_job("sweep.py", *run)
    out = run_job("trak.py", *run, "trak.models=2", "trak.proj_dim=32").stdout
    assert "trak: 20 targets" in out
    folder = RunFolder(tmp_path / "run")
    metrics, _ = read_frame(folder.fit_metrics_file(), "fit")
    terms, _ = read_frame(folder.interactions_file(), "fit")
    assert sorted(metrics["target"]) == list(range(20)) and set(metrics["engine"]) == {"trak"}
    assert set(terms["order"]) == {1} and metrics["models_used"].eq(2).all()
    assert "skipped" in run_job("trak.py", *run, "trak.models=2", "trak.proj_dim=32").stdout
    assert "trak" not in PruneSettings().methods  # opt-in: the default methods need no trak fit
    run_job("prune.py", *run, "prune.methods=[trak,random]", "prune.fractions=[0.5]")
    keep, _ = read_frame(folder.keep_sets_file, "prune")
    assert set(keep["method"]) == {"trak", "random"} and keep.loc[keep["method"] == "trak", "size"].eq(30).all()
