"""Everything that produces a run: datasets (:mod:`~datamodels.sweep.data`), players and mask
designs (:mod:`~datamodels.sweep.masks`), networks and their training
(:mod:`~datamodels.sweep.models`, :mod:`~datamodels.sweep.train`, :mod:`~datamodels.sweep.stacking`,
:mod:`~datamodels.sweep.loaders`, :mod:`~datamodels.sweep.ffcv_loader`), the sweep itself
(:mod:`~datamodels.sweep.stage`) and its progress (:mod:`~datamodels.sweep.status`), and the other
ways a run comes to be: imported (:mod:`~datamodels.sweep.importing`; the source's arrays read by
:mod:`~datamodels.sweep.import_source`) or planted (:mod:`~datamodels.sweep.planted`; the games
themselves in :mod:`~datamodels.sweep.games`). :mod:`~datamodels.sweep.run_data` reads a run's dataset and
players back for the stages after it."""

from .._moved import forward


def __getattr__(name: str):
    # ``datamodels.sweep`` was the sweep's module: its names still resolve, with a warning.
    return forward(__name__, name)
