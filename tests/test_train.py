import numpy as np
import pytest
import torch

from datamodels.data import prepare
from datamodels.masks import MaskDesign
from datamodels.models import build_model
from datamodels.train import TrainConfig, augment, batch_order, lr_lambda, margins_of, to_device, train_model


def test_margin_is_correct_logit_minus_best_other():
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.5, 0.2, 3.0]])
    labels = torch.tensor([1, 0])
    np.testing.assert_allclose(margins_of(logits, labels).numpy(), [3.0, -2.5])


def test_every_kept_example_is_seen_once_per_epoch():
    gen = torch.Generator().manual_seed(0)
    batches = batch_order(10, TrainConfig(epochs=3, batch_size=4), gen)
    assert len(batches) == 9
    for epoch in range(3):
        assert sorted(torch.cat(batches[3 * epoch:3 * epoch + 3]).tolist()) == list(range(10))
    assert len(batch_order(10, TrainConfig(steps=7, batch_size=4), gen)) == 7


@pytest.mark.parametrize("schedule", ["triangular", "onecycle"])
def test_schedules_rise_to_the_peak_and_fall_to_zero(schedule):
    f = lr_lambda(TrainConfig(schedule=schedule, warmup=0.25), 100)
    values = [f(s) for s in range(100)]
    assert max(values) == pytest.approx(1.0) and np.argmax(values) == 24
    assert values[0] < 0.1 and values[-1] < 0.05


def test_augmentation_flips_and_translates_whole_batches():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    out = augment(x, TrainConfig(flip=True, translate=1), gen)
    assert out.shape == x.shape
    for k in range(2):  # each output is a shifted (possibly mirrored) copy with zero fill
        candidates = []
        for img in (x[k, 0], x[k, 0].flip(1)):
            padded = torch.nn.functional.pad(img, (1, 1, 1, 1))
            candidates += [padded[dy:dy + 4, dx:dx + 4] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(out[k, 0], c) for c in candidates)


@pytest.mark.slow
def test_digits_models_learn_from_half_the_data():
    data = prepare("digits", train=1000, target=50, holdout=None)
    splits = to_device(data)
    torch.set_num_threads(1)
    design = MaskDesign("bernoulli", 1000, 0.5, seed=0)
    cfg = TrainConfig()  # the digits recipe's defaults
    accuracy = [train_model(lambda: build_model("small_cnn", 1, 10), splits, np.flatnonzero(design.mask(j)), j, cfg)
                .holdout_accuracy for j in range(3)]
    assert min(accuracy) > 0.85, accuracy  # chance is 0.1
