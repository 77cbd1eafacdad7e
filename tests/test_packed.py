"""Packed masks against the unpacked bool matrix they stand for."""

import pickle

import numpy as np
import pytest

from datamodels.packed import PackedMasks, as_packed, bool_t_dot


@pytest.fixture
def masks():
    rng = np.random.default_rng(0)
    return rng.random((300, 53)) < 0.4  # 53 players: the last byte is partly padding


def test_columns_rows_and_products_equal_the_bool_matrix(masks):
    X = PackedMasks.from_bool(masks)
    assert X.shape == (300, 53)
    players = [52, 0, 7, 8, 17, 17, 51]
    np.testing.assert_array_equal(X.columns(players), masks[:, players])
    np.testing.assert_array_equal(X.unpack(), masks)
    rows = np.array([299, 5, 5, 40])
    view = X[rows]
    assert view.rows is not None and view.packed is X.packed  # a view, not a copy
    np.testing.assert_array_equal(view.columns(players), masks[rows][:, players])
    np.testing.assert_array_equal(X[masks[:, 3]][1:3].unpack(), masks[masks[:, 3]][1:3])
    R = np.random.default_rng(1).normal(size=(300, 4))
    np.testing.assert_allclose(X.t_dot(R), masks.T.astype(float) @ R, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(view.t_dot(R[:4]), masks[rows].T.astype(float) @ R[:4], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bool_t_dot(masks, R), masks.T.astype(float) @ R, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(X.mean(), masks.mean(axis=0))


def test_memory_mapped_masks_pickle_as_their_file(tmp_path, masks):
    path = tmp_path / "masks.npy"
    np.save(path, np.packbits(masks, axis=1))
    X = PackedMasks(np.load(path, mmap_mode="r"), 53)[np.arange(10, 20)]
    payload = pickle.dumps(X)
    assert len(payload) < 1000  # the file name and the row index, not the bits
    back = pickle.loads(payload)
    assert isinstance(back.packed, np.memmap) and back.packed.filename == X.packed.filename
    np.testing.assert_array_equal(back.unpack(), masks[10:20])
    in_memory = PackedMasks.from_bool(masks)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(in_memory)).unpack(), masks)


def test_bad_masks_are_named(masks):
    with pytest.raises(ValueError, match="found 2 at row 1, column 4"):
        bad = masks.astype(int)
        bad[1, 4] = 2
        as_packed(bad)
    with pytest.raises(ValueError, match="2-D mask array"):
        as_packed(masks[0])
    with pytest.raises(ValueError, match="cannot hold n=60 players"):
        PackedMasks(np.packbits(masks, axis=1), 60)
    with pytest.raises(IndexError, match=r"player ids must lie in 0..52; got 0..53"):
        PackedMasks.from_bool(masks).columns([0, 53])
    with pytest.raises(ValueError, match=r"t_dot needs R of shape \[300, T\]"):
        PackedMasks.from_bool(masks).t_dot(np.ones((299, 1)))
