"""A run's identity: what makes two shards, layouts or run folders belong to the same sweep.

A sweep's identity (``IDENTITY_KEYS``) is what its ``run.json`` records and every shard's
metadata repeats; its ``config_hash`` is the hash of the settings that decide its results
(``RUN_SECTIONS``, less the launch settings). Every stage that reads a shard, a layout or a run
folder compares identities with :func:`check_identity`, so that a foreign file is refused by
name instead of mixed in.

The rules of the hash live here, apart from where a run folder keeps them
(:class:`~datamodels.run.folder.RunFolder`) and from who may train its shards
(:mod:`datamodels.run.claims`): they change only when what decides a sweep's results changes, and
each change must leave every recorded run's identity as it was.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import StoreError

# The configuration sections that decide a sweep's results (all but sweep.shard, which only
# picks the work of one job): a run folder records them (config.json) and keeps them.
RUN_SECTIONS = ("dataset", "players", "model", "train", "loader", "sweep")
# Settings of how a sweep is launched, not of its results: a run folder's jobs take them from the
# command line. sweep.models_per_pass (K models stacked in one pass) trains every model as it
# trains alone, up to floating-point rounding (datamodels.sweep.stacking, tests/test_stacking.py), as
# device and compile do.
LAUNCH_SETTINGS = ("sweep.shard", "sweep.models_per_pass")
# Launch settings that entered the config hash before they were known to be such: the hash
# counts them at this value whatever they are, so that the run folders swept at it keep their
# identity (those swept at another value keep theirs too: RunFolder.config_hash).
HASHED_LAUNCH_SETTINGS = {"sweep.models_per_pass": 1}
# Result-deciding settings added after sweeps were written, at their defaults (config_hash).
LATER_DEFAULTS = {"train": {"precision": "fp32"}}


# The keys that make two shards belong to the same sweep: a run's identity (run.json).
IDENTITY_KEYS = ("format", "fingerprint", "n", "T", "design", "alpha", "sweep_seed", "repeats",
                 "models_per_shard", "num_models", "config_hash", "budget", "degree")  # the last two: design=spex


def config_hash(config: dict, hashed_as: dict | None = None) -> str:
    """Hash of everything that determines the sweep's results (not where or how it is launched).
    A setting added after sweeps were written counts only away from its default
    (``LATER_DEFAULTS``), so those sweeps keep their identity. A launch setting that the hash
    once counted counts at its fixed value (``HASHED_LAUNCH_SETTINGS``, or ``hashed_as``: the
    value a run folder was swept with then, for the hash it recorded)."""
    relevant = {k: config.get(k) for k in RUN_SECTIONS if k != "sweep"}
    for section, defaults in LATER_DEFAULTS.items():
        if isinstance(relevant.get(section), dict):
            relevant[section] = {k: v for k, v in relevant[section].items() if k not in defaults or v != defaults[k]}
    relevant["sweep"] = {k: v for k, v in config["sweep"].items() if f"sweep.{k}" not in LAUNCH_SETTINGS}
    for path, value in (HASHED_LAUNCH_SETTINGS | (hashed_as or {})).items():
        key = path.split(".", 1)[1]
        if key in config["sweep"]:  # a sweep written before the setting existed did not count it
            relevant["sweep"][key] = value
    return short_hash(relevant)


def hashed_launch_settings_then(swept: dict) -> dict:
    """The hashed launch settings (``HASHED_LAUNCH_SETTINGS``) that a sweep recorded (``swept``:
    its ``sweep`` section) at another value than the hash now counts, by path; empty when none.
    A folder swept so may have recorded ``config_hash(config, hashed_as=these)`` instead of
    today's hash (:meth:`RunFolder.config_hash <datamodels.run.folder.RunFolder.config_hash>`)."""
    then = {path: swept[path.split(".", 1)[1]] for path in HASHED_LAUNCH_SETTINGS if path.split(".", 1)[1] in swept}
    return then if then != {p: HASHED_LAUNCH_SETTINGS[p] for p in then} else {}


def short_hash(value) -> str:
    """16 hex digits of the sha256 of ``value`` as sorted JSON: a run's config hash (and a
    planted run's fingerprint). Changing how it is spelt changes every recorded run's identity."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def with_later_defaults(config: dict) -> dict:
    """A recorded configuration with the settings added since (``LATER_DEFAULTS``) at their
    defaults, as the sweep that wrote it ran: a job resuming or reading an older run compares
    and uses them as any other recorded setting."""
    filled = dict(config)
    for section, defaults in LATER_DEFAULTS.items():
        if isinstance(filled.get(section), dict):
            filled[section] = defaults | filled[section]
    return filled


def identity(meta: dict) -> dict:
    return {k: meta.get(k) for k in IDENTITY_KEYS}


def check_identity(path: Path, meta: dict, expected: dict) -> None:
    """Refuse ``path`` (a shard, a layout, a run.json) when its identity ``meta`` is another sweep's."""
    found, want = identity(meta), identity(expected)
    if found != want:
        diff = ", ".join(f"{k}={found[k]!r} there, {want[k]!r} in this job's settings" for k in IDENTITY_KEYS
                         if found[k] != want[k])
        raise StoreError(f"{path} belongs to a different sweep: {diff}. It was left untouched; "
                         f"move it away or point the run at another folder.")
