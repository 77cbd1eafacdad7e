"""One run folder's identity, players and (where it has one) dataset, for every view of a run.

A run either has its dataset linked (a sweep trained here: ``config.json`` names the dataset),
so players and targets have images and class names; or it has none (a planted sweep, models
imported without the dataset's archive): players are shown by index, with their class where the
run holds a labels file (``RunFolder.label_files``), and nothing that needs an image is drawn.
The analysis views (:class:`datamodels.views.analysis.RunView`), the report, pruning and curation all
read the run through :class:`RunData`, so a run without images is shown, pruned and curated the
same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..run.folder import RunFolder
from .masks import player_classes
from .stage import SweepRun


class AnalysisError(UserError):
    """A run folder lacks the output a view needs."""


@dataclass
class RunData:
    """A run's identity (``run.json``), its players and its dataset when linked."""

    run_dir: Path

    @classmethod
    def open(cls, run_dir: str | os.PathLike) -> "RunData":
        folder = RunFolder(run_dir)
        if not folder.run_json.exists():
            raise AnalysisError(str(folder.no_sweep_error()))
        return cls(folder.root)

    @cached_property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @cached_property
    def sweep_run(self) -> SweepRun | None:
        """The sweep with its dataset re-created, or None when the run has no dataset linked."""
        if not self.folder.config_json.exists():
            return None
        if (self.folder.read_config().get("dataset") or {}).get("name") in (None, "none"):
            return None
        return SweepRun.open(self.run_dir)

    @property
    def has_images(self) -> bool:
        return self.sweep_run is not None

    @cached_property
    def meta(self) -> dict:
        """The run's identity (``run.json``), with the sweep's description when its dataset is linked."""
        dataset = "planted" if self.folder.planted_truth.exists() else "none linked"
        meta = {"dataset": dataset, "players": "example", "model": None} | self.folder.read_run()
        return meta | (self.sweep_run.meta if self.sweep_run is not None else {})

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @property
    def T(self) -> int:
        return int(self.meta["T"])

    def _need_images(self, what: str) -> None:
        if not self.has_images:
            raise AnalysisError(f"{what} needs the run's images, and {self.run_dir} has no dataset linked "
                                f"(players are shown by index and class instead)")

    def target_image(self, t: int) -> np.ndarray:
        self._need_images(f"the image of target {t}")
        return self.sweep_run.data.images("target")[t]

    def target_label(self, t: int) -> str | None:
        """The target's class name, or None when the run has no dataset linked."""
        if self.sweep_run is None:
            return None
        data = self.sweep_run.data
        return data.dataset.classes[data.labels("target")[t]]

    def target_name(self, t: int) -> str:
        """``target 7 (cat)``, or ``target 7`` when its class is unknown."""
        label = self.target_label(t)
        return f"target {t}" + (f" ({label})" if label is not None else "")

    @cached_property
    def groups(self) -> np.ndarray:
        """For each training example, its player (every example is a player of its own without a dataset)."""
        return self.sweep_run.groups if self.sweep_run is not None else np.arange(self.n)

    @cached_property
    def first_example(self) -> np.ndarray:
        """For each player, the index (into the train split) of its first example: what figures show."""
        return np.unique(self.groups, return_index=True)[1]

    @cached_property
    def player_size(self) -> np.ndarray:
        """For each player, how many training examples it switches on or off together."""
        return np.bincount(self.groups, minlength=self.n)

    def player_examples(self, player: int) -> np.ndarray:
        """Indices (into the train split) of every example of a player."""
        return np.flatnonzero(self.groups == player)

    @cached_property
    def player_labels(self) -> np.ndarray | None:
        """Each player's class (the most common label of its examples, as pruning's class quotas
        count it), or None when unknown: from the linked dataset, else from the run's labels file
        (``RunFolder.label_files``)."""
        if self.sweep_run is not None:
            return player_classes(self.groups, self.sweep_run.data.labels("train"))
        path = next((p for p in self.folder.label_files if p.exists()), None)
        if path is None:
            return None
        labels = np.load(path)
        if labels.shape != (self.n,) or labels.dtype.kind not in "iu":
            raise AnalysisError(f"{path} must hold one integer class per player ({self.n}), it holds "
                                f"{labels.dtype} {labels.shape}")
        return labels

    @cached_property
    def class_names(self) -> tuple[str, ...] | None:
        return self.sweep_run.data.dataset.classes if self.sweep_run is not None else None

    def player_class(self, player: int) -> str | None:
        """The player's class name (its number without a dataset), or None when unknown."""
        if self.player_labels is None:
            return None
        label = int(self.player_labels[player])
        return self.class_names[label] if self.class_names is not None else str(label)

    def player_name(self, player: int) -> str:
        """``player 123 (class 4)``, ``player 123 (cat)``, or ``player 123`` when its class is unknown;
        a group of examples says how many it has."""
        cls = self.player_class(player)
        label = "" if cls is None else f"class {cls}" if self.class_names is None else cls
        size = int(self.player_size[player])
        parts = [p for p in (label, f"{size} examples" if size > 1 else "") if p]
        return f"player {player}" + (f" ({', '.join(parts)})" if parts else "")
