import numpy as np
import pytest
import torch

from datamodels.sweep.data import prepare
from datamodels.sweep.masks import MaskDesign
from datamodels.sweep.models import build_model
from datamodels.sweep.loaders import to_device
from datamodels.sweep.train import TrainConfig, lr_lambda, margins_of, train_model


def test_margin_is_correct_logit_minus_best_other():
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.5, 0.2, 3.0]])
    labels = torch.tensor([1, 0])
    np.testing.assert_allclose(margins_of(logits, labels).numpy(), [3.0, -2.5])


@pytest.mark.parametrize("schedule", ["triangular", "onecycle"])
def test_schedules_rise_to_the_peak_and_fall_to_zero(schedule):
    f = lr_lambda(TrainConfig(schedule=schedule, warmup=0.25), 100)
    values = [f(s) for s in range(100)]
    assert max(values) == pytest.approx(1.0) and np.argmax(values) == 24
    assert values[0] < 0.1 and values[-1] < 0.05


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
