"""The fit stage (:mod:`~datamodels.fit.stage`): an engine of :mod:`datamodels.interactions` per
target, judged on held-out models; exact ground truth of exhaustive sweeps
(:mod:`~datamodels.fit.exhaustive`) and TRAK, the cheap-attribution anchor
(:mod:`~datamodels.fit.trak`)."""
