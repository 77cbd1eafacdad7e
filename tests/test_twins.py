"""The duplicates experiment's bookkeeping (datamodels.sweep.twins, conf/experiment/duplicates.yaml):
which players are twins, and that a twin's images are its original's, perturbed by the recipe."""

import numpy as np
import pandas as pd
import pytest

from conftest import compose_config
from datamodels.errors import UserError
from datamodels.sweep.stage import SweepRun
from datamodels.sweep.twins import SHIFTS, shift_image, twin_outcomes


def experiment(tmp_path, *overrides):
    config = compose_config(["experiment=duplicates", f"run_dir={tmp_path}", *overrides])
    return SweepRun(config, tmp_path)


def test_shift_moves_by_one_pixel_and_fills_the_edge_with_zero():
    image = np.arange(1, 10, dtype=np.uint8).reshape(3, 3, 1)
    assert shift_image(image, 1, 0)[:, :, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    assert shift_image(image, 0, -1)[:, :, 0].tolist() == [[2, 3, 0], [5, 6, 0], [8, 9, 0]]


def test_twins_are_the_perturbed_images_of_their_originals(tmp_path):
    demo = SweepRun(compose_config(["experiment=demo", f"run_dir={tmp_path}"]), tmp_path)
    run = experiment(tmp_path, "players.twins.shift=true")
    count = 10
    assert run.n == demo.n + count == 110
    pairs = run.twins
    assert list(pairs.columns) == ["player_a", "player_b"] and len(pairs) == count
    assert pairs["player_a"].is_unique and pairs["player_a"].max() < demo.n
    assert pairs["player_b"].tolist() == list(range(demo.n, demo.n + count))
    # the demo's own players and data are untouched, the copies come after them
    m = len(demo.groups)
    assert np.array_equal(run.groups[:m], demo.groups)
    assert np.array_equal(run.data.splits["train"][:m], demo.data.splits["train"])
    for split in ("target", "holdout"):
        assert np.array_equal(run.data.images(split), demo.data.images(split))
    assert run.data.fingerprint != demo.data.fingerprint
    images, labels = run.data.images("train"), run.data.labels("train")
    for a, b in zip(pairs["player_a"], pairs["player_b"]):
        originals, copies = np.flatnonzero(run.groups == a), np.flatnonzero(run.groups == b)
        assert len(originals) == len(copies) and np.array_equal(labels[originals], labels[copies])
        for i, j in zip(originals, copies):
            # one of the four shifts explains the copy up to noise of sd 8 (no pixel off by > 6 sd)
            errors = [np.abs(images[j].astype(int) - shift_image(images[i], *s).astype(int)) for s in SHIFTS]
            best = min(errors, key=lambda e: e.mean())
            assert best.max() <= 48 and 3 < best.std() < 13 and not np.array_equal(images[i], images[j])


def test_twins_are_seeded_and_exact_without_noise(tmp_path):
    a, b = experiment(tmp_path), experiment(tmp_path)
    assert a.data.fingerprint == b.data.fingerprint and a.twins.equals(b.twins)
    other = experiment(tmp_path, "players.twins.seed=1")
    assert not other.twins.equals(a.twins)
    images = a.data.images("train").astype(int)  # the experiment's default: the noise only
    for a_, b_ in zip(a.twins["player_a"], a.twins["player_b"]):
        error = images[a.groups == b_] - images[a.groups == a_]
        assert np.abs(error).max() <= 48 and 3 < error.std() < 13
    unshifted = experiment(tmp_path, "players.twins.noise=0")
    images = unshifted.data.images("train")
    for a_, b_ in zip(unshifted.twins["player_a"], unshifted.twins["player_b"]):
        assert np.array_equal(images[unshifted.groups == a_], images[unshifted.groups == b_])
    exact = experiment(tmp_path, "players.twins.noise=0", "players.twins.shift=true")
    images = exact.data.images("train")
    for a_, b_ in zip(exact.twins["player_a"], exact.twins["player_b"]):
        for i, j in zip(np.flatnonzero(exact.groups == a_), np.flatnonzero(exact.groups == b_)):
            assert any(np.array_equal(images[j], shift_image(images[i], *s)) for s in SHIFTS)


def test_the_run_records_its_twins(tmp_path):
    run = experiment(tmp_path, "sweep.num_models=2", "sweep.models_per_shard=2", "train.epochs=1")
    assert run.run_shard(0, progress=False) == "written"
    recorded = pd.read_csv(run.folder.twins)
    assert recorded.equals(run.twins)
    assert (SweepRun.open(tmp_path).twins.equals(recorded))  # re-created from the run's config


def test_candidate_figure_shows_the_twins_side_by_side(tmp_path):
    from datamodels.views.analysis import RunView, plot_candidates
    from datamodels.pruning.duplicates import STAGE, candidate_groups, named_candidates, read_candidates
    from datamodels.tables import write_frame

    run = experiment(tmp_path, "sweep.num_models=2", "sweep.models_per_shard=2", "train.epochs=1")
    run.run_shard(0, progress=False)
    twins = run.twins.assign(fraction=[1.0 - i / 20 for i in range(len(run.twins))], targets=3, duplicate=True)
    write_frame(run.folder.duplicate_candidates, candidate_groups(twins, run.n), {"stage": STAGE})
    view = RunView.open(tmp_path)
    fig = plot_candidates(view, read_candidates(tmp_path), k=3)
    rows = [[ax for ax in fig.axes if ax.images and ax.get_subplotspec().rowspan.start == r] for r in range(3)]
    for row, (a, b) in zip(rows, zip(run.twins["player_a"], run.twins["player_b"])):
        shown = [ax.images[0].get_array() for ax in row]
        first = [view.sweep_run.data.images("train")[view.first_example[p]].squeeze() for p in (a, b)]
        assert len(shown) == 2 and all(np.array_equal(s, f) for s, f in zip(shown, first))
    assert named_candidates(view, 2)["players"].str.contains(r"player \d+ \(\d").all()


def test_bad_twin_settings_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"players.twins.count=500 must be an integer in 1..100"):
        experiment(tmp_path, "players.twins.count=500")
    with pytest.raises(UserError, match="must be a mapping of count, seed, noise, shift"):
        experiment(tmp_path, "+players.twins.flip=2")
    with pytest.raises(UserError, match="players.twins.noise=-1.0 must be"):
        experiment(tmp_path, "players.twins.noise=-1.0")


def test_twin_outcomes_count_each_keep_set_by_brute_force():
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"player_a": [0, 3, 5, 7], "player_b": [10, 11, 12, 13]})
    keep = pd.DataFrame([{"method": m, "fraction": 0.5, "draw": d, "players": np.sort(rng.choice(14, 7, replace=False))}
                         for m in ("linear", "random") for d in range(3)])
    outcomes = twin_outcomes(keep, pairs)
    for row, players in zip(outcomes.itertuples(), keep["players"]):
        kept = [(a in players) + (b in players) for a, b in zip(pairs["player_a"], pairs["player_b"])]
        assert (row.both_kept, row.one_kept, row.both_removed) == (kept.count(2), kept.count(1), kept.count(0))
    assert outcomes[["method", "draw"]].values.tolist() == keep[["method", "draw"]].values.tolist()
