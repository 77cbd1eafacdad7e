"""Opening a run for the views: which folder a notebook reads (:func:`run_dir_from_environment`)
and :class:`RunView`, lazy access to everything that folder holds, the fit's tables and those of
the stages after it. The tables and figures built on it are :mod:`datamodels.views.terms`,
:mod:`~datamodels.views.comparisons` and :mod:`~datamodels.views.figures`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..fit.results import FitView
from ..sweep.run_data import AnalysisError
from ..tables import read_frame


def _repository_root() -> Path | None:
    """The checkout this package runs from (the folder holding ``conf/`` and ``jobs/``), if any:
    the package's parent for an editable install, else the nearest such folder above the cwd."""
    for folder in (Path(__file__).resolve().parents[2], *Path.cwd().resolve().parents, Path.cwd().resolve()):
        if (folder / "conf").is_dir() and (folder / "jobs").is_dir():
            return folder
    return None


def run_dir_from_environment(default: str = "runs/demo", variable: str = "DATAMODELS_RUN") -> Path:
    """The run folder a notebook opens: ``$DATAMODELS_RUN``, else ``default`` (the demo's run).

    An absolute path is taken as it is. A relative one is resolved against the current directory
    (where the user launched Python from) and, when nothing is there, against the repository's
    root: Jupyter runs a notebook with its own folder (``analysis/``) as the current directory,
    so ``DATAMODELS_RUN=runs/mine`` typed at the root still finds ``runs/mine``. Neither there:
    an :class:`AnalysisError` names both places it looked.
    """
    given = os.environ.get(variable) or default
    path = Path(given).expanduser()
    if path.is_absolute():
        return path
    root = _repository_root()
    tried = [Path.cwd() / path] + ([root / path] if root is not None and root != Path.cwd().resolve() else [])
    for candidate in tried:
        if candidate.exists():
            return candidate.resolve()
    source = f"{variable}={given}" if os.environ.get(variable) else f"the default run {given} ({variable} is not set)"
    raise AnalysisError(f"{source}: no such folder in the current directory ({tried[0]})"
                        + (f" nor in the repository's root ({tried[1]})" if len(tried) > 1 else "")
                        + f"; set {variable} to a run folder (absolute, or relative to either)")


@dataclass
class RunView(FitView):
    """Lazy access to everything one run folder holds: the fit (:class:`~datamodels.fit.results.FitView`)
    and the tables of the stages after it."""

    @cached_property
    def keep_sets(self) -> pd.DataFrame:
        return self._read(read_frame, self.folder.keep_sets_file, "prune (jobs/prune.py)")[0]

    @cached_property
    def pruning(self) -> pd.DataFrame:
        return self._read(read_frame, self.folder.evaluation, "pruning evaluation (jobs/evaluate_pruning.py)")[0]

    def ablation(self, name: str = "pairs") -> pd.DataFrame:
        """A retraining check's measured checks (``jobs/ablate.py``; ``name`` its folder under
        ``ablations/``: ``pairs``, ``removal-alpha``, ``removal-full``, ``heldout`` or ``ablate.name``)."""
        checks, meta = self._read(read_frame, self.folder.ablation_results(name)[0], "ablate (jobs/ablate.py)")
        checks.attrs["design"] = meta["design"]  # pairs, removal or heldout
        return checks

    def ablations(self) -> list[str]:
        """The retraining checks of this run that have been measured."""
        return sorted(p.name for p in self.folder.ablations_dir.glob("*")
                      if self.folder.ablation_results(p.name)[0].exists())
