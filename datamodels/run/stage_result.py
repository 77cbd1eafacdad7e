"""What one call of a stage did, told the same way by every stage: :class:`StageResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True)
class StageResult:
    """What ``run_<stage>(run_dir, settings, *, progress, force)`` did.

    - ``stage``: which stage: ``import``, ``fit`` (a whole fit or one part), ``trak``, ``prune``,
      ``evaluate``, ``curate``, ``duplicates``, ``ablate`` or ``report``.
    - ``written``: the stage's output files this call wrote, in the order below (not its records of
      inputs); empty when it wrote none.
    - ``up_to_date``: the call found the stage's outputs current and redid nothing (recorded inputs
      and settings unchanged, a fit part already there, every imported shard already there);
      ``force=True`` redoes the stages that record their inputs.
    - ``pending``: the stage needs another call to finish (ablate: models of its child sweep are
      still missing; the next call without ``ablate.shard`` trains them and measures).
    - ``outputs``: what the call computed, by name; empty when it computed nothing (up to date,
      pending).

    ============  ===============================================  ===============================================
    stage         ``written``                                      ``outputs``
    ============  ===============================================  ===============================================
    import        the shards written now                           ``plan`` (the ImportPlan), ``present`` (shards
                                                                   already there, checked and kept)
    fit, trak     the interactions and metrics tables (a part's    ``interactions``, ``metrics``: the rows fitted
                  own files for a fit part)                        by this call
    prune         the keep-sets table                              ``keep_sets``
    evaluate      evaluation.parquet, then its summary, paired     ``summary``, ``paired``
                  differences and figure
    curate        the curated folder's files                       none
    duplicates    the candidate pairs, then the candidate groups   ``pairs``, ``candidates`` (the groups)
    ablate        the checks, their summary (the paired            ``checks``, ``summary``, ``paired`` (None but
                  comparison) and figure                           for removals of linear and interactions)
    report        the page, its faithfulness table and its         none
                  conclusions (not the figures beside them)
    ============  ===============================================  ===============================================
    """

    stage: str
    written: tuple[Path, ...] = ()
    up_to_date: bool = False
    pending: bool = False
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "written", tuple(Path(p) for p in self.written))  # stages collect them in lists
