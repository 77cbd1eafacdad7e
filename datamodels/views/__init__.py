"""What a researcher reads: DataFrames and figures of a run (:mod:`~datamodels.views.analysis`, the
notebooks' API) and the static HTML report (:mod:`~datamodels.views.report`)."""
