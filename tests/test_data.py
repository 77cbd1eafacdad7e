import numpy as np
import pytest

from datamodels.sweep.data import (CIFAR10_CLASSES, DataError, load_dataset, load_digits, make_splits, prepare,
                             write_cifar10_archive)


def test_digits_are_real_images_scaled_to_uint8():
    ds = load_digits()
    assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.uint8
    assert ds.images.max() == 255 and ds.images.min() == 0
    assert set(np.unique(ds.labels)) == set(range(10))


def test_splits_are_disjoint_deterministic_and_fingerprinted():
    a = prepare("digits", train=500, target=100, holdout=None, split_seed=3)
    b = prepare("digits", train=500, target=100, holdout=None, split_seed=3)
    c = prepare("digits", train=500, target=100, holdout=None, split_seed=4)
    sets = [set(a.splits[k]) for k in ("train", "target", "holdout")]
    assert sum(map(len, sets)) == 1797 and len(set.union(*sets)) == 1797
    assert all(np.array_equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_split_sizes_beyond_the_pool_are_refused():
    with pytest.raises(DataError, match="cannot take"):
        prepare("digits", train=1700, target=200)
    with pytest.raises(DataError, match="at least one"):
        prepare("digits", train=0, target=10)


def test_unknown_dataset_is_refused():
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*digits"):
        load_dataset("mnist")


def _fake_cifar(num, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(num, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=num)


def test_cifar10_binary_reader_on_a_generated_archive(tmp_path):
    images, labels = _fake_cifar(70)
    md5 = write_cifar10_archive(tmp_path / "cifar-10-binary.tar.gz", images, labels, num_test=20)
    ds = load_dataset("cifar10", root=tmp_path, md5=md5, download=False)
    assert ds.classes == CIFAR10_CLASSES
    np.testing.assert_array_equal(ds.images, images)  # channel planes decoded back to HWC exactly
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.is_test.sum() == 20 and ds.is_test[-20:].all()
    # players come from the official train part, targets and holdout from the test part
    splits = make_splits(ds, train=40, target=5, holdout=None, seed=0)
    assert (splits["train"] < 50).all() and (splits["target"] >= 50).all() and len(splits["holdout"]) == 15


def test_cifar10_record_layout_is_label_then_rgb_planes(tmp_path):
    images, labels = _fake_cifar(7)
    write_cifar10_archive(tmp_path / "cifar-10-binary.tar.gz", images, labels, num_test=2)
    import tarfile
    with tarfile.open(tmp_path / "cifar-10-binary.tar.gz") as tar:
        raw = tar.extractfile("cifar-10-batches-bin/test_batch.bin").read()
    record = np.frombuffer(raw, np.uint8)[:3073]
    assert record[0] == labels[5]
    np.testing.assert_array_equal(record[1:1025].reshape(32, 32), images[5, :, :, 0])  # red plane first
    np.testing.assert_array_equal(record[2049:].reshape(32, 32), images[5, :, :, 2])


def test_cifar10_checksum_mismatch_and_missing_archive_are_clear_errors(tmp_path):
    images, labels = _fake_cifar(12)
    write_cifar10_archive(tmp_path / "cifar-10-binary.tar.gz", images, labels, num_test=2)
    with pytest.raises(DataError, match="md5 .* expected c32a1d4ab5d03f1284b67883e8d87530"):
        load_dataset("cifar10", root=tmp_path)  # the genuine archive's checksum
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", root=tmp_path / "elsewhere", download=False)


def test_cifar10_truncated_batch_is_refused(tmp_path):
    import io
    import tarfile
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
            payload = bytes(3073 * 2 + (100 if name == "data_batch_3.bin" else 0))
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataError, match="data_batch_3.bin holds .* not a whole number"):
        load_dataset("cifar10", root=tmp_path, md5=None)


def test_synthetic_images_have_the_requested_shape():
    ds = load_dataset("synthetic", num_images=50, shape=(16, 16, 3), num_classes=5)
    assert ds.images.shape == (50, 16, 16, 3) and ds.labels.max() < 5
