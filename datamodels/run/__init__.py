"""The run folder, on the ground floor: its paths (:mod:`~datamodels.run.folder`), what makes its
files one sweep's (:mod:`~datamodels.run.identity`), who trains a shard now
(:mod:`~datamodels.run.claims`), what a stage last ran on (:mod:`~datamodels.run.stage_inputs`)
and what one call of a stage did (:mod:`~datamodels.run.stage_result`)."""

from .stage_result import StageResult

__all__ = ["StageResult"]
