import numpy as np
import pytest

from datamodels.sweep.data import load_digits
from datamodels.sweep.masks import MaskDesign, MaskError, group_players, kept_examples, load_mask_file, training_seed


def test_masks_are_pure_functions_of_seed_and_index():
    a, b = MaskDesign("bernoulli", 200, 0.5, seed=7), MaskDesign("bernoulli", 200, 0.5, seed=7)
    np.testing.assert_array_equal(a.mask(13), b.mask(13))
    assert not np.array_equal(a.mask(13), a.mask(14))
    assert not np.array_equal(a.mask(13), MaskDesign("bernoulli", 200, 0.5, seed=8).mask(13))
    assert training_seed(7, 13) == training_seed(7, 13) != training_seed(7, 14)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.8])
def test_bernoulli_keeps_alpha_in_expectation(alpha):
    design = MaskDesign("bernoulli", 100, alpha, seed=0)
    kept = np.mean([design.mask(j).mean() for j in range(400)])
    assert abs(kept - alpha) < 0.01


def test_fixed_size_keeps_exactly_round_alpha_n():
    design = MaskDesign("fixed_size", 101, 0.3, seed=0)
    assert {int(design.mask(j).sum()) for j in range(50)} == {30}


@pytest.mark.parametrize("kind", ["bernoulli", "fixed_size"])
def test_an_alpha_grid_gives_every_mask_its_own_alpha(kind):
    grid = (0.2, 0.5, 0.9)
    design = MaskDesign(kind, 200, grid, seed=3)
    alphas = design.alpha_of(np.arange(600))
    assert set(alphas) == set(grid)
    for a in grid:  # each value drawn about a third of the time, and its masks keep that fraction
        chosen = np.flatnonzero(alphas == a)
        assert abs(len(chosen) / 600 - 1 / 3) < 0.07
        assert abs(np.mean([design.mask(j).mean() for j in chosen[:60]]) - a) < 0.02
    np.testing.assert_array_equal(design.alpha_of([5, 7]), MaskDesign(kind, 200, grid, seed=3).alpha_of([5, 7]))
    # one value keeps the masks of the single-alpha design
    np.testing.assert_array_equal(MaskDesign(kind, 50, (0.3,), 1).mask(4), MaskDesign(kind, 50, 0.3, 1).mask(4))
    assert np.isnan(MaskDesign("exhaustive", 4).alpha_of([1])).all()


def test_a_bad_alpha_grid_is_refused():
    with pytest.raises(MaskError, match="strictly between 0 and 1"):
        MaskDesign("bernoulli", 10, (0.2, 1.0))
    with pytest.raises(MaskError, match="lists a value twice"):
        MaskDesign("bernoulli", 10, (0.2, 0.2))


def test_exhaustive_enumerates_every_subset_once():
    design = MaskDesign("exhaustive", 5)
    masks = np.array([design.mask(j) for j in range(design.num_masks)])
    assert design.num_masks == 32 and len({m.tobytes() for m in masks}) == 32
    np.testing.assert_array_equal(design.mask(6), [False, True, True, False, False])  # bit p = player p
    with pytest.raises(MaskError, match="outside the 32 masks"):
        design.mask(32)


def test_exhaustive_is_refused_beyond_20_players():
    with pytest.raises(MaskError, match="refused for n=21 > 20"):
        MaskDesign("exhaustive", 21)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.2, 1.5])
def test_alpha_outside_the_open_unit_interval_is_refused(alpha):
    with pytest.raises(MaskError, match="strictly between 0 and 1"):
        MaskDesign("bernoulli", 10, alpha)


def test_unknown_design_is_refused():
    with pytest.raises(MaskError, match="unknown mask design 'sobol'"):
        MaskDesign("sobol", 10)


def test_mask_file_is_validated(tmp_path):
    good = np.random.default_rng(0).integers(0, 2, size=(4, 6))
    np.save(tmp_path / "good.npy", good)
    design = MaskDesign("file", 6, masks_from_file=load_mask_file(tmp_path / "good.npy", 6)[0])
    assert design.num_masks == 4
    np.testing.assert_array_equal(design.mask(2), good[2].astype(bool))
    np.save(tmp_path / "shape.npy", good[:, :5])
    with pytest.raises(MaskError, match=r"shape.npy must hold an array \[num_masks, 6\].*\(4, 5\)"):
        load_mask_file(tmp_path / "shape.npy", 6)
    bad = good.copy()
    bad[1, 3] = 2
    np.save(tmp_path / "values.npy", bad)
    with pytest.raises(MaskError, match="holds 2 at row 1, column 3"):
        load_mask_file(tmp_path / "values.npy", 6)
    with pytest.raises(MaskError, match="does not exist"):
        load_mask_file(tmp_path / "absent.npy", 6)


def test_player_groups():
    ds = load_digits()
    labels, images = ds.labels[:300], ds.images[:300]
    np.testing.assert_array_equal(group_players("example", labels), np.arange(300))
    by_class = group_players("class", labels)
    assert by_class.max() == 9 and all(len(set(labels[by_class == g])) == 1 for g in range(10))
    clusters = group_players("cluster", labels, images, num_groups=8, seed=0)
    np.testing.assert_array_equal(clusters, group_players("cluster", labels, images, num_groups=8, seed=0))
    assert set(clusters) == set(range(8))
    # kept examples are exactly the members of kept players
    mask = np.zeros(10, dtype=bool)
    mask[[2, 5]] = True
    np.testing.assert_array_equal(kept_examples(mask, by_class), np.flatnonzero(np.isin(labels, [2, 5])))


def test_group_file(tmp_path):
    labels = np.zeros(6, dtype=np.int64)
    np.save(tmp_path / "groups.npy", np.array([5, 5, 9, 9, 9, 2]))
    np.testing.assert_array_equal(group_players("file", labels, path=tmp_path / "groups.npy"), [1, 1, 2, 2, 2, 0])
    np.save(tmp_path / "short.npy", np.array([0, 1]))
    with pytest.raises(MaskError, match="must hold 6 non-negative integers"):
        group_players("file", labels, path=tmp_path / "short.npy")
    with pytest.raises(MaskError, match="unknown player grouping"):
        group_players("pairs", labels)


def test_mask_file_seed_groups_pair_the_training_seeds(tmp_path):
    masks = np.random.default_rng(1).integers(0, 2, size=(4, 6))
    np.savez(tmp_path / "paired.npz", masks=masks, seed_groups=np.array([0, 0, 1, 1]))
    loaded, groups = load_mask_file(tmp_path / "paired.npz", 6)
    design = MaskDesign("file", 6, masks_from_file=loaded, seed_groups=groups)
    # two repeats: masks 0 and 1 share seeds 0 and 1, masks 2 and 3 share seeds 2 and 3
    assert [design.seed_index(i, 2) for i in range(8)] == [0, 1, 0, 1, 2, 3, 2, 3]
    plain = MaskDesign("file", 6, masks_from_file=loaded)
    assert [plain.seed_index(i, 2) for i in range(8)] == list(range(8))
    np.savez(tmp_path / "short.npz", masks=masks, seed_groups=np.array([0, 1]))
    with pytest.raises(MaskError, match="seed_groups must be 4 non-negative integers"):
        load_mask_file(tmp_path / "short.npz", 6)
    np.savez(tmp_path / "unnamed.npz", masks)
    with pytest.raises(MaskError, match="holds no array 'masks'"):
        load_mask_file(tmp_path / "unnamed.npz", 6)
