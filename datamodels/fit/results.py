"""A fit's outputs read back: its models, terms and metrics, and the scale its terms are judged in.

:class:`FitView` is what the stages after the fit read (pruning's duplicates, the retraining
checks); :class:`~datamodels.views.analysis.RunView` extends it with the later stages' tables for
the notebooks and the report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StoreError
from ..renamed import renamed_keyword
from ..store.fit_ready import FitReady, open_fit_ready
from ..sweep.run_data import AnalysisError, RunData
from .faithfulness import residual_scale
from .outputs import read_fit_table, untested_interactions


@dataclass
class FitView(RunData):
    """Lazy access to one run folder's fit: the run (:class:`~datamodels.sweep.run_data.RunData`:
    its identity, players and, where linked, dataset), its collected models and the fit's tables."""

    def _read(self, read, path: Path, *args):
        """``read(path, *args)``, a missing or foreign table said as an :class:`AnalysisError` naming the run."""
        try:
            return read(path, *args)
        except StoreError as err:
            raise AnalysisError(f"{err} (for {self.run_dir})") from err

    @cached_property
    def models(self) -> FitReady:
        """The collected models: packed masks and target-major margins, memory-mapped."""
        try:
            return open_fit_ready(self.run_dir, progress=False)
        except StoreError as err:
            raise AnalysisError(str(err)) from err

    def margins(self, target: int) -> np.ndarray:
        """One target's margin in every collected model."""
        return np.asarray(self.models.target_margins[target], dtype=float)

    @cached_property
    def margin_sd(self) -> np.ndarray:
        """Every target's margin sd over the collected models, read a block of targets at a time."""
        margins = self.models.target_margins
        step = max(1, (64 << 20) // (4 * margins.shape[1]))  # about 64 MB of float32 per block
        return np.concatenate([np.asarray(margins[t:t + step], dtype=np.float64).std(1)
                               for t in range(0, margins.shape[0], step)])

    @cached_property
    def interactions_arrow(self) -> pa.Table:
        """``fit/interactions.parquet`` as an Arrow table: millions of terms in a few flat arrays."""
        return self._read(read_fit_table, self.folder.interactions_file())[0]

    @property
    def interaction_table(self) -> pa.Table:
        """Deprecated name of :attr:`interactions_arrow`, kept for one release: it read as the
        function :func:`datamodels.interactions.interaction_table`, which computes a table."""
        warnings.warn("RunView.interaction_table is deprecated; use RunView.interactions_arrow (the same Arrow "
                      "table; RunView.interactions is it as a DataFrame)", DeprecationWarning, stacklevel=2)
        return self.interactions_arrow

    @cached_property
    def interactions(self) -> pd.DataFrame:
        """Every fitted term as a DataFrame (a Python list per row: at CIFAR scale prefer :meth:`terms`)."""
        return self.interactions_arrow.to_pandas()

    @renamed_keyword("method", "engine")
    def terms(self, engine: str | None = None, target: int | None = None, orders=None, kind: str | None = None,
              members: bool = True, claims: bool = False) -> pd.DataFrame:
        """The fitted terms of one engine / target / orders / kind, filtered before they become a
        DataFrame (indexed by row of the table); ``members=False`` leaves the players out.
        ``claims=True``: only the terms that may be stated as findings, without the interactions
        an engine that tests them did not mark tested (:func:`~datamodels.fit.outputs.untested_interactions`:
        ProxySPEX's ``untested="cv"``, which predict but passed no test)."""
        table = self.interactions_arrow
        keep = ~untested_interactions(table) if claims else np.ones(table.num_rows, dtype=bool)
        for column, value in (("engine", engine), ("target", target), ("kind", kind)):
            if value is not None:
                keep &= pc.equal(table.column(column), value).to_numpy(zero_copy_only=False)
        if orders is not None:
            keep &= pc.is_in(table.column("order"), pa.array(list(orders), table.schema.field("order").type)
                             ).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(keep)
        chosen = table.take(rows) if members else table.drop_columns(["members"]).take(rows)
        return chosen.to_pandas().set_axis(pd.Index(rows), axis=0)

    @cached_property
    def fit_metrics(self) -> pd.DataFrame:
        return self._read(read_fit_table, self.folder.fit_metrics_file())[0].to_pandas()

    def engines(self) -> list[str]:
        """The fitted engines (of the fit's metrics: one row per target, not per term)."""
        return sorted(self.fit_metrics["engine"].unique())

    def methods(self) -> list[str]:
        """Deprecated name of :meth:`engines`, kept for one release."""
        warnings.warn("FitView.methods() is renamed engines()", DeprecationWarning, stacklevel=2)
        return self.engines()


def default_engine(view: FitView) -> str:
    """The fit the views show by default: ProxySPEX where fitted, else the engine with the most targets."""
    counts = view.fit_metrics["engine"].value_counts()
    if counts.empty:
        raise AnalysisError(f"{view.folder.fit_metrics_file()} holds no fitted target")
    return "proxyspex" if "proxyspex" in counts.index else str(counts.index[0])


def default_method(view: FitView) -> str:
    """Deprecated name of :func:`default_engine`, kept for one release."""
    warnings.warn("default_method is renamed default_engine", DeprecationWarning, stacklevel=2)
    return default_engine(view)


@renamed_keyword("method", "engine")
def fitted_metrics(view: FitView, engine: str) -> pd.DataFrame:
    metrics = view.fit_metrics
    rows = metrics[metrics["engine"] == engine]
    if rows.empty:
        raise AnalysisError(f"no target has a {engine} fit (fitted engines: {sorted(metrics['engine'].unique())}): "
                            f"run jobs/fit.py fit={engine}")
    return rows


@renamed_keyword("method", "engine")
def residual_sd(view: FitView, engine: str) -> pd.Series:
    """Per fitted target (index): the sd of what its fit leaves unexplained, ``tau_t = sqrt(1 -
    R^2_t) sd_t`` (:func:`~datamodels.fit.faithfulness.residual_scale`) with the held-out R^2 and the
    margin sd over the collected models: the scale pruning judges a target's terms in
    (:class:`~datamodels.pruning.Surrogate`), and the views rank terms by."""
    rows = fitted_metrics(view, engine)
    targets = rows["target"].to_numpy(np.int64)
    tau = residual_scale(rows["r2"].to_numpy(float), view.margin_sd[targets])
    return pd.Series(tau, index=pd.Index(targets, name="target"), name="residual_sd")
