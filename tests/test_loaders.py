import numpy as np
import pytest
import torch

from datamodels.sweep.data import prepare
from datamodels.sweep.loaders import ResidentLoader, augment, batch_order, draw_augmentation, step_params, to_device, total_steps
from datamodels.sweep.stage import make_loader
from datamodels.sweep.train import TrainConfig


def test_every_kept_example_is_seen_once_per_epoch_in_full_batches():
    cfg = TrainConfig(epochs=3, batch_size=4)
    steps = total_steps(10, cfg)
    assert steps == 8  # ceil(3 * 10 / 4): full batches across epoch boundaries
    order = batch_order(10, steps, 4, torch.Generator().manual_seed(0))
    assert order.shape == (8, 4)
    stream = order.flatten()
    for epoch in range(3):
        assert sorted(stream[10 * epoch:10 * epoch + 10].tolist()) == list(range(10))
    assert total_steps(10, TrainConfig(steps=7, batch_size=4)) == 7
    longer = batch_order(10, 12, 4, torch.Generator().manual_seed(0))
    assert torch.equal(longer[:8], order)  # more steps extend the same stream


def test_the_same_seed_with_another_mask_changes_only_which_examples_are_seen():
    data = prepare("digits", train=100, target=10, holdout=20)
    loader = ResidentLoader(to_device(data))
    cfg = TrainConfig(epochs=2, batch_size=8, flip=True, translate=1, cutout=2)
    a, b = np.arange(0, 60), np.arange(40, 100)  # as many kept examples, different ones
    (index_a, aug_a), (index_b, aug_b) = loader.plan(a, 5, cfg), loader.plan(b, 5, cfg)
    np.testing.assert_array_equal(index_a.numpy(), index_b.numpy() - 40)  # same positions in the kept lists
    assert all(torch.equal(aug_a[k], aug_b[k]) for k in aug_a)
    first_epoch = [y for _, (x, y) in zip(range(60 // 8), loader.batches(a, 5, cfg))]
    assert len(first_epoch) == 7 and all(len(y) == 8 for y in first_epoch)


def test_augmentation_flips_translates_and_cuts_out_whole_batches():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    cfg = TrainConfig(flip=True, translate=1)
    params = draw_augmentation(cfg, 1, 2, (4, 4), torch.Generator().manual_seed(0))
    out = augment(x, step_params(params, 0), cfg)
    assert out.shape == x.shape
    for k in range(2):  # each output is a shifted (possibly mirrored) copy with zero fill
        candidates = []
        for img in (x[k, 0], x[k, 0].flip(1)):
            padded = torch.nn.functional.pad(img, (1, 1, 1, 1))
            candidates += [padded[dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[k, 0], c) for c in candidates)
    cut = TrainConfig(cutout=2)
    out = augment(x, step_params(draw_augmentation(cut, 1, 2, (4, 4), torch.Generator().manual_seed(1)), 0), cut)
    assert ((out == 0).sum(dim=(1, 2, 3)) == 4).all()  # a 2x2 square zeroed in each image
    assert torch.equal(out[out != 0], x[out != 0])


def test_an_unknown_loader_is_a_clear_error():
    splits = to_device(prepare("digits", train=50, target=10, holdout=10))
    with pytest.raises(ValueError, match="unknown loader 'tfrecord'; choose one of resident, ffcv"):
        make_loader("tfrecord", splits)
