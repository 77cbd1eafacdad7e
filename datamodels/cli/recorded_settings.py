"""A run folder describes itself: a job given ``run_dir=X`` takes the sweep's settings from
``X/config.json``, and an override that contradicts them is refused (:func:`run_settings`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ..errors import UserError
from ..run.folder import RunFolder
from ..run.identity import LAUNCH_SETTINGS, RUN_SECTIONS


def _leaves(value, prefix: str) -> dict:
    if isinstance(value, dict) and value:
        return {k: v for key, sub in value.items() for k, v in _leaves(sub, f"{prefix}.{key}").items()}
    return {prefix: value}


def _select(tree: dict, path: str):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def overridden_paths(overrides: list[str]) -> set[str]:
    """The run settings (dotted paths) that command-line overrides set: ``sweep.alpha=0.3`` sets
    ``sweep.alpha``, a group choice (``players=cluster``) its whole section, ``experiment=X``
    every section."""
    paths = set()
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").replace("/", ".")
        if key == "experiment":
            paths |= set(RUN_SECTIONS)
        elif key.split(".")[0] in RUN_SECTIONS and key not in LAUNCH_SETTINGS:
            paths.add(key)
    return paths


def contradictions(given: dict, recorded: dict, overrides: list[str]) -> list[str]:
    """``setting=recorded value`` for each run setting an override gives another value than the
    run folder recorded."""
    found = []
    for path in sorted(overridden_paths(overrides)):
        if _select(recorded, path.split(".")[0]) is None:
            continue  # a section the run did not record (an older run folder)
        mine, theirs = _leaves(_select(given, path), path), _leaves(_select(recorded, path), path)
        for key in sorted(set(mine) | set(theirs)):
            if key not in LAUNCH_SETTINGS and mine.get(key) != theirs.get(key):
                found.append(f"{key}={json.dumps(theirs.get(key))} (given: {json.dumps(mine.get(key))})")
    return found


def run_settings(cfg: DictConfig, overrides: list[str], creates_run: bool, derives: bool = False) -> DictConfig:
    """``cfg`` with ``run_dir`` made absolute and the run's recorded sweep settings in place.

    A run folder without ``config.json`` (planted sweeps, older runs) keeps ``cfg`` as given;
    a job other than the sweep refuses a folder that holds no sweep. A job that ``derives`` the
    run's settings itself (the import) keeps ``cfg`` too: it checks the run's identity instead.
    """
    folder = RunFolder(Path(cfg.run_dir).absolute())
    with open_dict(cfg):
        cfg.run_dir = str(folder.root)
    if not folder.run_json.exists():
        if creates_run:
            return cfg
        remove_own_logs(folder)
        raise folder.no_sweep_error()
    recorded_path = folder.config_json
    if derives or not recorded_path.exists():
        return cfg
    recorded = folder.read_config()
    given = OmegaConf.to_container(cfg, resolve=True)
    if wrong := contradictions(given, recorded, overrides):
        raise UserError(f"{folder.root} was swept with {', '.join(wrong)}: a run keeps the settings it was swept with "
                        f"({recorded_path}). Drop the override, or give another run_dir= for a new sweep")
    with open_dict(cfg):
        for section in RUN_SECTIONS:
            if isinstance(recorded.get(section), dict):
                launch = {path.split(".", 1)[1]: OmegaConf.select(cfg, path) for path in LAUNCH_SETTINGS
                          if path.startswith(f"{section}.")}
                cfg[section] = recorded[section] | launch
    return cfg


def remove_own_logs(folder: RunFolder) -> None:
    """Hydra made ``<run_dir>/logs/<this job>`` before the job learnt that ``run_dir`` holds no
    sweep: remove what it made there, so that a mistyped run_dir leaves nothing behind."""
    from hydra.core.hydra_config import HydraConfig

    output = Path(HydraConfig.get().runtime.output_dir)
    if output.is_relative_to(folder.root) and not any(p.name != "logs" for p in folder.root.iterdir()):
        shutil.rmtree(folder.root, ignore_errors=True)
