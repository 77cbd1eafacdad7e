"""The run folder, on the ground floor: its paths (:mod:`~datamodels.run.folder`), what makes its
files one sweep's (:mod:`~datamodels.run.identity`), who trains a shard now
(:mod:`~datamodels.run.claims`) and what a stage last ran on (:mod:`~datamodels.run.stage_inputs`)."""
