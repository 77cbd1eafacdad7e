"""The batched (GPU) linear datamodel, run on the CPU: the Lasso's solution at the chosen
penalty, the faithfulness of the CPU path, bad input refused."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_job
from sklearn.linear_model import Lasso

from datamodels.fit.faithfulness import r2
from datamodels.interactions import LinearDatamodel, mobius_predict
from datamodels.interactions.batched_lasso import fit_linear_batched
from datamodels.packed import PackedMasks
from datamodels.sweep.planted import planted_game, read_planted_truth, write_planted_sweep

GAME = dict(n_synergy=2, n_redundancy=2, n_triples=0, main_sd=0.1, strength=1.0)


def planted(n, m, targets, seed=0):
    rng = np.random.default_rng(seed)
    X, X_test = rng.random((m, n)) < 0.5, rng.random((3000, n)) < 0.5
    Y, F_test = [], []
    for t in range(targets):
        game = planted_game(n, seed=seed + t, **GAME)
        f = mobius_predict(game, X)
        Y.append(f + rng.normal(0, 0.5 * f.std(), m))
        F_test.append(mobius_predict(game, X_test))
    return X, np.stack(Y, 1), X_test, np.stack(F_test, 1)


def test_solution_is_the_lasso_at_the_chosen_penalty():
    X, Y, _, _ = planted(120, 2000, 3)
    fit = fit_linear_batched(PackedMasks.from_bool(X), Y, device="cpu", target_batch=2, tol=1e-6, max_iter=5000,
                             progress=False)
    assert fit.coef.shape == (120, 3) and np.all(fit.penalty > 0)
    for t in range(3):
        reference = Lasso(alpha=fit.penalty[t], tol=1e-10, max_iter=100_000).fit(X.astype(float), Y[:, t])
        assert (reference.coef_ != 0).sum() > 10  # a real path point, not the empty model
        np.testing.assert_allclose(fit.coef[:, t], reference.coef_, atol=1e-5)
        assert fit.intercept[t] == pytest.approx(reference.intercept_, abs=1e-5)
        # The chosen penalty is the path's best on validation; the path stopped early after it.
        best = np.nanargmin(fit.val_mse[:, t])
        assert fit.penalty[t] == pytest.approx(fit.penalties[best, t])
        assert np.isnan(fit.val_mse[:, t]).any()


def test_faithful_as_the_cpu_path():
    X, Y, X_test, F_test = planted(300, 4000, 3, seed=5)
    fit = fit_linear_batched(X, Y, device="cpu", progress=False)
    batched = [r2(F_test[:, t], fit.predict(X_test)[:, t]) for t in range(3)]
    cpu = [r2(F_test[:, t], LinearDatamodel().fit(X, Y[:, t]).predict(X_test)) for t in range(3)]
    assert min(batched) > 0.8
    np.testing.assert_allclose(batched, cpu, atol=0.03)


def test_repeats_of_a_mask_stay_on_one_side_and_bad_input_is_refused():
    X, Y, _, _ = planted(40, 600, 2)
    groups = np.repeat(np.arange(300), 2)
    fit = fit_linear_batched(X, Y, device="cpu", groups=groups, progress=False)
    assert (fit.validation[::2] == fit.validation[1::2]).all() and 0.1 < fit.validation.mean() < 0.3
    assert np.isfinite(fit.coef).all()
    bad = Y.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"targets \[1\] hold NaN"):
        fit_linear_batched(X, bad, device="cpu", progress=False)
    with pytest.raises(ValueError, match="Y must be"):
        fit_linear_batched(X, Y[:-1], device="cpu", progress=False)
    with pytest.raises(ValueError, match="val_fraction"):
        fit_linear_batched(X, Y, device="cpu", val_fraction=1.0, progress=False)


@pytest.mark.slow
def test_fit_job_runs_the_batched_path_beside_the_cpu_one(tmp_path):
    write_planted_sweep(tmp_path, n=150, T=4, num_masks=1500, repeats=2, seed=3, progress=False, **GAME)
    run_job("fit.py", f"run_dir={tmp_path}", "fit=linear_gpu", "fit.params.device=cpu", "fit.params.target_batch=3",
            "progress=false")
    run_job("fit.py", f"run_dir={tmp_path}", "fit=linear", "fit.workers=1", "progress=false")
    metrics = pd.read_parquet(tmp_path / "fit" / "fit_metrics.parquet").set_index(["engine", "target"])["r2"]
    assert len(metrics) == 8
    np.testing.assert_allclose(metrics["linear_gpu"], metrics["linear"], atol=0.03)
    inter = pd.read_parquet(tmp_path / "fit" / "interactions.parquet")
    gpu = inter[inter["engine"] == "linear_gpu"]
    assert set(gpu["order"]) == {1} and set(gpu["target"]) == {0, 1, 2, 3}
    truth = read_planted_truth(tmp_path)
    strongest = gpu.loc[gpu["mobius"].abs().groupby(gpu["target"]).idxmax()]
    for target, members in zip(strongest["target"], strongest["members"]):
        # members of the planted interactions carry mains of size `strength`, the rest N(0, 0.1)
        assert any(int(members[0]) in key for key in truth[target] if len(key) > 1)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there_says_so(tmp_path):
    write_planted_sweep(tmp_path, n=20, T=1, num_masks=100, seed=0, progress=False, **GAME)
    proc = run_job("fit.py", f"run_dir={tmp_path}", "fit=linear_gpu", "progress=false", check=False)
    assert proc.returncode != 0 and "torch sees none" in proc.stderr and "fit=linear" in proc.stderr
    assert not (tmp_path / "fit").exists()
