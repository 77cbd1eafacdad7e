"""The check of a job's command line before Hydra composes (:func:`launch`, every job's
``__main__``): a setting or group option that does not exist is refused in one line, with the
closest name (:func:`override_error`)."""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ..renamed import current_overrides
from ..settings import not_a_setting


CONF = Path(__file__).resolve().parents[2] / "conf"
_FAILED_KEY = re.compile(r"Could not override '([^']+)'|Could not delete from config\. '([^']+)' does not exist")


def not_an_option(group: str, choice: str, options: list[str]) -> str:
    """``fit=proxyspx is not an option; did you mean fit=proxyspex? (fit options: ...)``; names
    starting with ``_`` are shared bases (``conf/fit/_stage.yaml``), not options, and go unlisted."""
    shown = [o for o in options if not o.startswith("_")]
    close = difflib.get_close_matches(choice, shown, 1)
    return (f"{group}={choice} is not an option" + (f"; did you mean {group}={close[0]}?" if close else "")
            + f" ({group} options: {', '.join(shown)})")


def _top_level_keys(path: Path) -> set[str]:
    import yaml

    try:
        return {str(key) for key in yaml.safe_load(path.read_text()) or {} if key != "defaults"}
    except (OSError, yaml.YAMLError, TypeError):
        return set()


def override_error(args: list[str], config_dir: Path = CONF, config_name: str = "config") -> str | None:
    """The one line that refuses a job's command line ``args`` before Hydra composes its config,
    or None: nothing to refuse, or nothing this check understands (Hydra says it then).

    - A setting that does not exist (``fit.worker=2``, ``fitt.workers=2``, ``~fit.worker``):
      :func:`datamodels.settings.not_a_setting`, in the config the other overrides compose.
      ``+fit.worker=2`` composes (``+`` adds a key); the stage's settings refuse it
      (:func:`datamodels.settings.from_section`), in the same words.
    - A group option that does not exist (``fit=proxyspx``; also ``experiment=demoo``, which
      Hydra would skip silently, the group being optional): :func:`not_an_option`.

    A sweep (``-m 'sweep.shard=range(0,8)'``) is checked at its first value. Costs one compose
    (about 0.15 s) where an override sets a key below the top level (``fit.workers=2``), none for
    group choices and top-level keys (``fit=linear run_dir=X``); a command line that asks for help,
    or another config (``--config-dir``, ``--config-name``), is left to Hydra.
    """
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # a bad flag: Hydra's own parser says it
            given = get_args_parser().parse_args(args)
        overrides = OverridesParser.create().parse_overrides(given.overrides)
    except (SystemExit, HydraException):  # a syntax error: Hydra's message says where
        return None
    if (given.help or given.hydra_help or given.shell_completion or given.config_path or given.config_name
            or given.config_dir or given.experimental_rerun or not overrides or not config_dir.is_dir()):
        return None
    if any(o.key_or_group == "debug" and not o.is_sweep_override() and o.value() for o in overrides):
        return None  # debug=true: Hydra's whole message
    if any(o.key_or_group == "hydra.searchpath" for o in overrides):
        return None  # config folders of the user's own (an engine's conf/fit/X.yaml): options this check cannot see
    single = []  # (override, its value, the override as one run's: a sweep at its first value)
    for o in overrides:
        if not o.is_sweep_override():
            single.append((o, o.value(), o.input_line))
            continue
        try:
            first = next(iter(o.sweep_string_iterator()), None)
        except Exception:  # a sweep only its sweeper expands (interval(0,1), glob(*)): unchecked
            continue
        if first is not None:
            single.append((o, first, f"{o.get_key_element()}={first}"))
    with initialize_config_dir(config_dir=str(config_dir.absolute()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for o, value, _ in single:
            options = [] if o.is_delete() or "." in o.key_or_group else loader.get_group_options(o.key_or_group)
            for choice in value if isinstance(value, list) else [value]:
                if options and choice is not None and str(choice) not in options:
                    return not_an_option(o.key_or_group, str(choice), options)
        # what Hydra cannot fail to override: a group's choice (checked above), a top-level key of
        # the primary config (run_dir=, progress=), a + or ++ (adds, or Hydra's own message)
        primary = _top_level_keys(config_dir / f"{config_name}.yaml")
        if all(o.is_add() or o.is_force_add() or (not o.is_delete() and (o.key_or_group in primary
               or loader.get_group_options(o.key_or_group))) for o, *_ in single):
            return None
        wrong = []  # the keys Hydra could not override, one a try
        for _ in range(len(single) + 1):
            try:
                config = compose(config_name, overrides=[line for *_, line in single], return_hydra_config=True)
                break
            except ConfigCompositionException as err:
                if isinstance(err, MissingConfigException):
                    return None
                found = _FAILED_KEY.search(str(err))
                key = found and (found.group(1) or found.group(2))
                if not key or not any(o.key_or_group == key for o, *_ in single):
                    return None
                wrong.append(key)
                single = [s for s in single if s[0].key_or_group != key]
            except Exception:  # not a key that does not exist (experiment=null): Hydra says what
                return None
        else:
            return None
        if not wrong:
            return None
        # the config's keys, and the groups that chose nothing (experiment) beside them
        tree = dict.fromkeys(loader.list_groups("")) | OmegaConf.to_container(config, resolve=False)
        return not_a_setting(wrong[0], tree)


def launch(main) -> None:
    """Run a job's ``@hydra.main`` function from the command line, as every ``jobs/*.py`` does in
    its ``__main__``: a setting or option that does not exist is refused first, in one line
    (:func:`override_error`), where Hydra prints six and suggests the ``+`` that adds the typo.
    ``HYDRA_FULL_ERROR=1`` or ``debug=true`` leaves the command line to Hydra, whole message and all.
    A renamed setting (``fit.method=``) is spelt as now first (:mod:`datamodels.renamed`)."""
    sys.argv[1:] = current_overrides(sys.argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        try:
            message = override_error(sys.argv[1:])
        except Exception:  # the check must never stop a command line that Hydra accepts
            message = None
        if message:
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(1)
    main()
