"""A stage's recorded inputs, so that re-running a stage whose inputs did not change does nothing.

The sweep skips finished shards; the stages after it (fit, report, ...) write one set of files
from files of earlier stages. Each records beside its outputs a small JSON file: the sha256 of
every input file it read, its settings and the package version. When the record matches what
the stage would read now and every output is still in place, the stage is skipped
(``force=true`` redoes it). Stages call it as::

    inputs = StageInputs(RunFolder(run_dir).fit_record("proxyspex"), {"layout": path}, settings)
    if not force and inputs.unchanged(outputs):
        return                 # skipped
    ...                        # the stage's work
    inputs.save()
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from .. import __version__
from ..tables import file_digest, write_atomic


class StageInputs:
    """The inputs of one stage run: named files (by content) and settings (JSON values)."""

    def __init__(self, record: str | os.PathLike, files: Mapping[str, Path], settings: Mapping):
        self.record = Path(record)
        self.digest = json.loads(json.dumps({
            "version": __version__, "settings": dict(settings),
            "files": {name: file_digest(Path(path)) for name, path in sorted(files.items())},
        }, default=str))

    def unchanged(self, outputs: Iterable[Path]) -> bool:
        """True when the last run of the stage read the same inputs and its outputs are all there."""
        if not self.record.exists() or not all(Path(p).exists() for p in outputs):
            return False
        try:
            return json.loads(self.record.read_text()) == self.digest
        except (OSError, json.JSONDecodeError):
            return False  # a damaged record only costs a re-run

    def save(self) -> None:
        """Record the inputs, after the stage wrote its outputs."""
        self.record.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.record, lambda tmp: tmp.write_text(json.dumps(self.digest, indent=1, sort_keys=True)))
