"""The shell every ``jobs/*.py`` entry point runs in.

:func:`job` wraps a job's main function (under ``@hydra.main``) and gives every stage the same
behaviour:

- **A run folder describes itself.** A job given ``run_dir=X`` takes the sweep's settings
  (``dataset``, ``players``, ``model``, ``train``, ``loader``, ``sweep``) from ``X/config.json``,
  so no later command repeats the sweep's overrides. An override on the command line that
  contradicts them is refused, naming the setting, both values and what to do.
- **User errors are one line.** A :class:`datamodels.errors.UserError` is printed as
  ``error: <message>`` on stderr, exit code 1; ``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows
  the traceback instead (and SLURM jobs raise it, for the launcher's report of failed jobs). Any
  other exception is a bug and keeps its traceback. A typo on the command line (``fit.worker=2``,
  ``fit=proxyspx``) is refused so too, with the closest name, before Hydra composes: every job's
  ``__main__`` calls :func:`launch`.
- **Threads and workers.** ``torch_threads`` applies to every job; a job running in a worker of
  a parallel sweep (``hydra/launcher=joblib``) exits when the launching process dies.
- **One line per sweep.** The shards of a multirun sweep report once, at its end
  (:class:`SweepSummary`, a Hydra callback), not once per worker.

This is the one library module that reads Hydra's state (the overrides as typed); the stages
themselves take plain values and never import Hydra.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import io
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from .errors import UserError
from .processes import leave_with_parent, parent_of
from .run.claims import ShardClaim
from .run.folder import RunFolder, SHARD_RE
from .run.identity import LAUNCH_SETTINGS, RUN_SECTIONS
from .settings import not_a_setting


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
        _remove_own_logs(folder)
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


def _remove_own_logs(folder: RunFolder) -> None:
    """Hydra made ``<run_dir>/logs/<this job>`` before the job learnt that ``run_dir`` holds no
    sweep: remove what it made there, so that a mistyped run_dir leaves nothing behind."""
    from hydra.core.hydra_config import HydraConfig

    output = Path(HydraConfig.get().runtime.output_dir)
    if output.is_relative_to(folder.root) and not any(p.name != "logs" for p in folder.root.iterdir()):
        shutil.rmtree(folder.root, ignore_errors=True)


def set_torch_threads(threads) -> None:
    """``torch_threads`` for torch in this process (when the job uses it) and for its children."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)  # children, and a torch imported later
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def _launcher() -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    return str(hydra.launcher.get("_target_", "")).lower() if hydra.mode == RunMode.MULTIRUN else ""


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def in_joblib_worker() -> bool:
    return "joblib" in _launcher() and os.environ.get("DATAMODELS_LAUNCHER_PID") != str(os.getpid())


def keep_traceback(cfg: DictConfig) -> bool:
    """Asked for (``debug=true``, ``HYDRA_FULL_ERROR=1``), or a SLURM job: its launcher reports each
    failed job's exception to the user itself, from the job's result."""
    return bool(cfg.get("debug")) or os.environ.get("HYDRA_FULL_ERROR") == "1" or "slurm" in _launcher()


def chosen_on_command_line(group: str) -> bool:
    """Whether the user chose ``group`` (``dataset=cifar10``), directly or by an experiment, rather
    than taking ``conf/config.yaml``'s default."""
    from hydra.core.hydra_config import HydraConfig

    keys = {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
    return group in keys or "experiment" in keys


class Interrupted(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a closed ssh session), raised in the main thread as Ctrl-C's
    SIGINT raises :class:`KeyboardInterrupt`, so that ``with`` blocks unwind (a shard's claim is
    released) before the job ends. ``detail``, when a stage sets it, says what was left unfinished."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def catch_interrupts(handler=_raise_interrupted) -> bool:
    """SIGINT and SIGTERM raise :class:`Interrupted` in this process (its main thread only).

    Not in a SLURM job: submitit's own SIGTERM and SIGUSR1 handlers (requeue on pre-emption or
    time limit, ``hydra_plugins/datamodels_slurm``) stay in place there, and its claims are taken
    over by the requeued job (:class:`datamodels.run.claims.ShardClaim`)."""
    if os.environ.get("SLURM_JOB_ID") or threading.current_thread() is not threading.main_thread():
        return False
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return True


def interrupted_line(err: KeyboardInterrupt) -> str:
    """The one line an interrupted job prints, e.g. ``interrupted (SIGTERM): shard 3 was not finished; ...``."""
    name = signal.Signals(getattr(err, "signum", signal.SIGINT)).name
    detail = getattr(err, "detail", None)
    return f"interrupted ({name})" + (f": {detail}" if detail else "")


def interrupted_exit_code(err: KeyboardInterrupt) -> int:
    return 128 + int(getattr(err, "signum", signal.SIGINT))  # 130 for SIGINT, 143 for SIGTERM, as a shell says


def job(creates_run: bool = False, derives: bool = False):
    """Decorator of a job's main function (place it under ``@hydra.main``); see the module doc.

    ``creates_run``: the job may start a new run folder (the sweep); every other job needs one.
    ``derives``: the job makes the run's settings itself (the import), so a run folder's recorded
    ones are neither imposed on it nor compared with its overrides.
    """
    # set in the launching process before any worker is started: workers inherit it
    os.environ.setdefault("DATAMODELS_LAUNCHER_PID", str(os.getpid()))

    def wrap(main):
        @functools.wraps(main)
        def run(cfg: DictConfig):
            from hydra.core.hydra_config import HydraConfig

            catch_interrupts()
            try:
                if in_joblib_worker():
                    leave_with_parent()
                set_torch_threads(cfg.get("torch_threads"))
                return main(run_settings(cfg, list(HydraConfig.get().overrides.task), creates_run, derives))
            except UserError as err:
                if creates_run and not RunFolder(Path(cfg.run_dir).absolute()).run_json.exists():
                    _remove_own_logs(RunFolder(Path(cfg.run_dir).absolute()))  # refused: leave nothing behind
                if keep_traceback(cfg):
                    raise
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(1) from None
            except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Interrupted)
                if keep_traceback(cfg):
                    raise
                if in_joblib_worker():  # the launching process says it, once for the whole sweep
                    import multiprocessing.util  # noqa: PLC0415

                    # what a normal exit does first: unlink this worker's semaphores (tqdm's lock), or
                    # multiprocessing's resource tracker warns of them after the sweep's last line
                    getattr(multiprocessing.util, "_exit_function", lambda: None)()
                    sys.stdout.flush(), sys.stderr.flush()
                    os._exit(interrupted_exit_code(err))
                print(interrupted_line(err), file=sys.stderr)
                raise SystemExit(interrupted_exit_code(err)) from None
        return run
    return wrap


def _shards_present(run_dir) -> set[str]:
    shards = RunFolder(Path(run_dir).absolute()).shards
    return {p.name for p in shards.iterdir() if SHARD_RE.match(p.name)} if shards.is_dir() else set()


class SweepSummary(Callback):
    """After a multirun of ``jobs/sweep.py``: one line for the whole sweep (shards written by
    this launch, already present, still missing), where each worker would print its own."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.before = _shards_present(config.run_dir) if config.hydra.job.name == "sweep" else None
        if self.before is not None and "joblib" in str(config.hydra.launcher.get("_target_", "")).lower():
            self.run_dir, self.debug = config.run_dir, bool(config.get("debug"))
            catch_interrupts(self._interrupted)

    def _interrupted(self, signum, frame) -> None:
        """SIGTERM or Ctrl-C in the launching process of a parallel sweep: its workers that hold a
        claim get SIGTERM (Ctrl-C in a terminal reached them already) and release their claims as
        they end (:func:`job`, quietly); then one line for the whole sweep, and the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        folder = RunFolder(Path(self.run_dir).absolute())
        workers = {}  # shard -> the pid of the worker of ours that trains it
        for shard in folder.claimed_shards():
            host, pid = ShardClaim(folder, shard).holder_process() or ("", 0)
            if pid and parent_of(pid) == os.getpid():
                workers[shard] = pid
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        while any(parent_of(pid) == os.getpid() for pid in workers.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        err = Interrupted(signum)
        if self.debug or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise err
        unfinished = sorted(s for s in workers if not folder.shard(s).exists())
        held = [s for s in unfinished if (ShardClaim(folder, s).holder_process() or ("", 0))[1] == workers[s]]
        names = ", ".join(map(str, unfinished))
        if not unfinished:
            err.detail = "run the same command to go on"
        else:
            claims = ((f"the claims of shards {', '.join(map(str, held))} are left to the next sweep, which takes "
                       f"them over") if held else "its claim is released" if len(unfinished) == 1
                      else "their claims are released")
            err.detail = (f"{'shard' if len(unfinished) == 1 else 'shards'} {names} "
                          f"{'was' if len(unfinished) == 1 else 'were'} not finished; {claims}; run the same command "
                          f"to resume")
        print(interrupted_line(err), file=sys.stderr, flush=True)
        raise SystemExit(interrupted_exit_code(err))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if getattr(self, "before", None) is None:
            return
        folder = RunFolder(Path(config.run_dir).absolute())
        try:
            run = folder.read_run()
        except UserError:
            return  # every job failed before the sweep began; their errors said why
        now = _shards_present(folder.root)
        total = -(-run["num_models"] // run["models_per_shard"])
        missing = total - len(now)
        print(f"{folder.shards}: {len(now - self.before)} shards written now, {len(self.before)} already present"
              + (f", {missing} missing (python jobs/status.py run_dir={folder.root} says why)" if missing else "")
              + f"; {total} shards of {run['models_per_shard']} models")


# ------------------------------------------------------------------ the command line, before Hydra

CONF = Path(__file__).resolve().parents[1] / "conf"
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
    ``HYDRA_FULL_ERROR=1`` or ``debug=true`` leaves the command line to Hydra, whole message and all."""
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        try:
            message = override_error(sys.argv[1:])
        except Exception:  # the check must never stop a command line that Hydra accepts
            message = None
        if message:
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(1)
    main()
