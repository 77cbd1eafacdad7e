"""Settings dataclasses from a config section: the one place that checks the section's keys.

:func:`from_section` builds ``FitSettings``, ``PruneSettings``, ``TrakSettings``,
``ImportSettings``, ``AblateSettings``, ``TrainConfig`` (any dataclass) from its section of the
config (``cfg.fit`` as a plain dict); each derives from :class:`Settings`, names its ``section``
and is built by ``FitSettings.from_config(section_dict)``. Every one gets the same two rules:

- **A key the dataclass does not know is one line** naming the closest setting
  (``fit.worker is not a setting; did you mean fit.workers?``), a :class:`UserError`, never
  ``TypeError: __init__() got an unexpected keyword argument``. Such a key reaches the section
  through ``+fit.worker=2`` (an unknown key without ``+`` is refused before Hydra composes, by
  :func:`datamodels.cli.launch`, with the same words: :func:`not_a_setting`).
- **A scalar where a list is expected is a one-element list**: ``prune.fractions=0.5`` is
  ``prune.fractions=[0.5]``. A list field is one whose type, ``None`` aside, is only lists or
  tuples (``list[float]``, ``list | None``); ``int | list`` takes a scalar as it is.

Their integer settings are checked by :meth:`Settings.check_integers`, in the same words for
every section (``prune.seed=-1 must be a non-negative integer``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping

from .errors import UserError
from .renamed import current_keys

_LISTS = (list, tuple)


def not_a_setting(key: str, tree: Mapping) -> str | None:
    """``<key> is not a setting; did you mean <closest>?`` for a dotted ``key`` (``fit.worker``)
    that the nested ``tree`` of settings lacks: each part is matched with the closest name at its
    level (:func:`difflib.get_close_matches`), so a misspelt section (``fitt.workers``) is found
    too; where a part has none close, the message lists that level's settings instead. None where
    ``key`` is in ``tree`` after all."""
    parts, node, path = key.split("."), tree, []
    for part in parts:
        if not isinstance(node, Mapping):
            return f"{key} is not a setting ({'.'.join(path)} is one, with nothing under it)"
        names = sorted(str(name) for name in node)
        if part not in names:
            close = difflib.get_close_matches(part, names, 1)
            if not close:
                where = ".".join(path)
                return f"{key} is not a setting ({where + ' ' if where else ''}settings: {', '.join(names)})"
            part = close[0]
        path.append(part)
        node = node[part]
    return f"{key} is not a setting; did you mean {'.'.join(path)}?" if path != parts else None


def _is_list_type(annotation) -> bool:
    """Whether a field's type, ``None`` aside, admits only lists or tuples."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(kinds) and all(_is_list_type(a) for a in kinds)
    return (origin or annotation) in _LISTS


def list_fields(cls) -> set[str]:
    """The fields of dataclass ``cls`` that take a list (see the module doc)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve here: judge it by its spelling
        hints = {}
    found = set()
    for f in dataclasses.fields(cls):
        annotation = hints.get(f.name, f.type)
        if isinstance(annotation, str):
            parts = {p.strip().split("[")[0] for p in annotation.split("|")} - {"None"}
            listed = bool(parts) and parts <= {"list", "tuple", "List", "Tuple"}
        else:
            listed = _is_list_type(annotation)
        if listed:
            found.add(f.name)
    return found


def from_section(cls, config: Mapping, section: str):
    """``cls(**config)`` for the config section named ``section`` (``"fit"``), with its keys
    checked and its list settings' scalars made lists (module doc); a key an earlier release
    spelt otherwise is read under its name now (:mod:`datamodels.renamed`)."""
    config = current_keys(section, config)
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in config:
        if key not in init:
            raise UserError(not_a_setting(f"{section}.{key}", {section: dict.fromkeys(init)}))
    values = dict(config)
    for name in list_fields(cls) & set(values):
        value = values[name]
        if value is not None and not isinstance(value, _LISTS):
            values[name] = [value]
    return cls(**values)


def is_integer(value, least: int | None = None) -> bool:
    """Whether ``value`` is an int of at least ``least``; a bool is not one (YAML's ``true`` would
    otherwise pass as 1), nor is a float such as ``2.0``."""
    return isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)


def is_number(value) -> bool:
    """Whether ``value`` is a real number (int or float); a bool is not one, for the reason above."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_INTEGERS = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}


class Settings:
    """Base of a settings dataclass built from one config section: ``section`` names it
    (``"fit"``), ``from_config`` builds it with :func:`from_section`; ``error`` is the class of
    the error a bad value of the section raises (a :class:`UserError`)."""

    section = ""
    error = UserError

    def check_integers(self, names, least: int | None = None) -> None:
        """Refuse, in one line, a setting of ``names`` that is not an integer of at least
        ``least`` (None: any, 0 or 1). A setting whose default is None may be None: unset."""
        optional = {f.name for f in dataclasses.fields(self) if f.default is None}
        for name in names:
            value = getattr(self, name)
            if not (is_integer(value, least) or value is None and name in optional):
                raise self.error(f"{self.section}.{name}={value!r} must be {_INTEGERS[least]}")

    @classmethod
    def from_config(cls, config: Mapping):
        """From the plain dict of ``cfg.<section>`` (``OmegaConf.to_container(cfg.fit, resolve=True)``)."""
        return from_section(cls, config, cls.section)
