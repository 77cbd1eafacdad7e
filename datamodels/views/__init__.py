"""What a researcher reads: DataFrames and figures of a run (:mod:`~datamodels.views.analysis`, the
notebooks' API, over :mod:`~datamodels.views.run_view`, :mod:`~datamodels.views.terms`,
:mod:`~datamodels.views.comparisons` and :mod:`~datamodels.views.figures`) and the static HTML
report (:mod:`~datamodels.views.report`)."""
