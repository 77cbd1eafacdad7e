"""The import paths of modules that moved into packages, kept working for one release.

``import datamodels.fitting`` still gives the fit stage's module (now :mod:`datamodels.fit.stage`),
``python -m datamodels.planted`` still runs :mod:`datamodels.sweep.planted`, and
``from datamodels.sweep import SweepRun`` still finds the class in :mod:`datamodels.sweep.stage`;
all warn (``DeprecationWarning``) with the new path. Hand-written: importlib has finders and
loaders but nothing that makes one module name stand for another.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> its module now
MOVED = {f"datamodels.{old}": f"datamodels.{new}" for old, new in {
    "run_folder": "run.folder", "run_identity": "run.identity", "claims": "run.claims",
    "stage_inputs": "run.stage_inputs", "fit_ready": "store.fit_ready",
    "data": "sweep.data", "masks": "sweep.masks", "models": "sweep.models", "train": "sweep.train",
    "loaders": "sweep.loaders", "ffcv_loader": "sweep.ffcv_loader", "stacking": "sweep.stacking",
    "twins": "sweep.twins", "planted": "sweep.planted", "importing": "sweep.importing",
    "status": "sweep.status", "run_data": "sweep.run_data", "fitting": "fit.stage",
    "exhaustive": "fit.exhaustive", "trak": "fit.trak", "duplicates": "pruning.duplicates",
    "analysis": "views.analysis", "report": "views.report", "report_text": "views.report_text",
}.items()}

#: the public names of the two old modules whose names are packages now
FORWARDED = {
    "datamodels.sweep": ("datamodels.sweep.stage", {"LOADERS", "SweepRun", "make_loader", "resolve_device"}),
    "datamodels.store": ("datamodels.store.shards", {
        "CollectReport", "FORMAT", "META_KEY", "ModelRecord", "RESULT_COLUMNS", "SCALAR_COLUMNS", "Sweep",
        "SweepResults", "collect", "collect_run", "compact_ranges", "load_sweep", "parquet_options", "partial_models",
        "read_models", "read_shard_columns", "read_shard_meta", "run_meta", "shard_files", "write_shard",
        "write_shard_columns"}),
}


def _warn(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} moved to {new}; the old path goes in the next release",
                  DeprecationWarning, stacklevel=stacklevel + 1)


def forward(package: str, name: str):
    """A name of the module ``package`` used to be, from the module that holds it now (for the
    package's ``__getattr__``)."""
    target, names = FORWARDED[package]
    if name not in names:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn(f"{package}.{name}", f"{target}.{name}", stacklevel=3)
    value = getattr(importlib.import_module(target), name)
    setattr(sys.modules[package], name, value)  # warned once; ``from ... import`` looks twice
    return value


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the module it moved to (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        _warn(spec.name, MOVED[spec.name], stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the module it stands for ran already

    def get_code(self, fullname):
        """For ``python -m <old path>`` (runpy asks for code): code that runs the new module as
        ``__main__``, whose relative imports need its own package."""
        _warn(fullname, MOVED[fullname], stacklevel=2)
        return compile(f"import runpy\nrunpy.run_module({MOVED[fullname]!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname}: moved to {MOVED[fullname]}>", "exec")


def install() -> None:
    """Make the old paths importable (once; ``datamodels/__init__.py`` calls it)."""
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(_OldPaths())
