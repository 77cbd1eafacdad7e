"""Settings and keyword arguments an earlier release spelt otherwise, accepted for one more release.

``method`` named two things: the fit's engine (``fit=proxyspex`` sets ``fit.method``) and a
pruning or removal method (``prune.methods``). The engine is now ``engine`` everywhere: the
settings below, the fit tables' column (:func:`datamodels.fit.outputs.read_fit_table` reads an
old table's ``method`` as ``engine``) and the views' keyword. The old spellings still work and
warn, naming the new one: a config key or command-line override with a :class:`FutureWarning`
(a user's script), a keyword argument with a :class:`DeprecationWarning` (a caller's code).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Mapping

from .errors import UserError

#: the old dotted setting -> its name now
RENAMED_SETTINGS = {"fit.method": "fit.engine", "prune.fit_method": "prune.fit_engine",
                    "ablate.fit_method": "ablate.fit_engine", "duplicates.method": "duplicates.engine"}
_OVERRIDE = re.compile(r"^(~|\+\+|\+)?([\w.]+)(=.*)?$", re.S)


def _warn_setting(old: str, new: str) -> None:
    warnings.warn(f"{old} is renamed {new} (it names the fit's engine; `method` is left to pruning and "
                  f"removal methods); {old} is accepted until the next release", FutureWarning, stacklevel=3)


def current_keys(section: str, config: Mapping) -> dict:
    """The plain dict of config section ``section`` with its renamed keys under their names now
    (a warning each); both spellings at once are refused, naming them."""
    values = dict(config)
    for old, new in RENAMED_SETTINGS.items():
        old_section, old_key = old.split(".")
        if old_section == section and old_key in values:
            if new.split(".")[1] in values:
                raise UserError(f"{old} and {new} both given: {old} is the old name of {new}; give {new} only")
            _warn_setting(old, new)
            values[new.split(".")[1]] = values.pop(old_key)
    return values


def current_overrides(args: list[str]) -> list[str]:
    """A job's command line with overrides of renamed settings (``fit.method=linear``, also
    ``+``/``~`` and sweeps of them) spelt as now (``fit.engine=linear``), a warning each."""
    current = []
    for arg in args:
        found = _OVERRIDE.match(arg)
        if found and found.group(2) in RENAMED_SETTINGS:
            prefix, key, value = found.groups()
            _warn_setting(key, RENAMED_SETTINGS[key])
            arg = f"{prefix or ''}{RENAMED_SETTINGS[key]}{value or ''}"
        current.append(arg)
    return current


def renamed_keyword(old: str, new: str):
    """Decorate a function whose keyword ``old`` is now ``new``: ``old=`` still works, with a
    :class:`DeprecationWarning`, until the next release."""
    def decorate(function):
        @functools.wraps(function)
        def call(*args, **kwargs):
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{function.__qualname__}() got both {old}= and {new}= ({old} is the old name)")
                warnings.warn(f"{function.__qualname__}({old}=...) is renamed {new}=; {old}= is accepted until "
                              f"the next release", DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)
        return call
    return decorate
