"""What a sweep writes and the fit reads: the parquet shards (:mod:`~datamodels.store.shards`) and
their fit-ready layout (:mod:`~datamodels.store.fit_ready`)."""

from .._moved import forward


def __getattr__(name: str):
    # ``datamodels.store`` was the shards' module: its names still resolve, with a warning.
    return forward(__name__, name)
