"""Planted sweeps and releases: synthetic retraining games with known interactions, on disk.

The games themselves are :mod:`datamodels.sweep.games` (:func:`planted_game` is one target's
game, as a Möbius spectrum; its names are importable from here too). :func:`write_planted_sweep`
turns ``T`` of them into a sweep on disk in the store's genuine format (``run.json``, parquet
shards), without training anything: the fit stage at CIFAR scale (n = 50,000 players, 10^5
models) has to be exercised and timed against a known truth, and 10^5 trained models are not
a test fixture. The truth lies beside the shards in ``<run_dir>/planted/truth.parquet``.

    python -m datamodels.sweep.planted --run-dir /tmp/planted --n 50000 --targets 100 --masks 50000 --repeats 2
    python -m datamodels.sweep.planted --release /tmp/release --n 50000 --targets 10000 --masks 100000 --n-mains 1000

:func:`write_planted_release` writes the same games in the datamodels release's format (two
dense ``.npy`` files, labels, the truth), for :mod:`datamodels.sweep.importing` and its benchmarks.
"""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from ..errors import StoreError, UserError
from ..run.folder import RunFolder
from ..run.identity import check_identity, short_hash
from ..store.shard_file import ModelRecord, read_shard_meta, run_meta, write_shard
from ..tables import check_free_space, read_frame, size_text, write_atomic, write_frame
from .games import _PlantedGames, _spectra, bernoulli_sd, planted_game, unanimity_game
from .import_source import release_files
from .masks import MaskDesign, training_seed

# the games are documented under this module's path (README, docs/benchmarks.md): they stay importable here
__all__ = ["bernoulli_sd", "planted_game", "planted_release_bytes", "read_planted_truth", "unanimity_game",
           "write_planted_release", "write_planted_sweep"]

# Stream tag of the players' classes (a planted sweep's ``classes``, a planted release's labels):
# they describe players and change no margin.
_LABEL_STREAM = 3


def _truth_table(spectra: list[dict[int, tuple[np.ndarray, np.ndarray]]]) -> pa.Table:
    """Rows (target, members, order, mobius), built from flat arrays (millions of rows at n = 50,000)."""
    parts = [(t, order, members, values) for t, s in enumerate(spectra) for order, (members, values) in s.items()]
    orders = np.concatenate([np.full(len(values), order) for _, order, _, values in parts])
    offsets = np.concatenate([[0], np.cumsum(orders)]).astype(np.int32)
    return pa.table({
        "target": np.concatenate([np.full(len(values), t) for t, _, _, values in parts]),
        "members": pa.ListArray.from_arrays(offsets, np.concatenate([m.ravel() for _, _, m, _ in parts])),
        "order": orders,
        "mobius": np.concatenate([values for _, _, _, values in parts]),
    })


def write_planted_sweep(run_dir: str | os.PathLike, n: int, T: int, num_masks: int, repeats: int = 1,
                        alpha: float = 0.5, noise: float = 0.5, models_per_shard: int = 1000, seed: int = 0,
                        progress: bool = True, spex_budget: int | None = None, spex_degree: int = 5,
                        classes: int | None = None, **game) -> list[Path]:
    """Write a sweep of planted games as genuine shards, and its truth; return the shards written now.

    Target ``t`` is ``planted_game(n, seed=<from (seed, t)>, **game)``. Model ``i`` trains on
    bernoulli mask ``i // repeats`` of ``MaskDesign("bernoulli", n, alpha, seed)``; its margin on
    target ``t`` is the game's value on that mask plus Gaussian seed noise of sd
    ``noise * bernoulli_sd(game t, alpha)`` drawn from the model's own training seed, so repeats
    of a mask differ and any model is re-created alone. Shards that exist are kept (after an
    identity check), so an interrupted run resumes and yields the same files. With
    ``spex_budget``, the masks are those of ``MaskDesign("spex", ...)`` instead (``alpha`` only
    scales the noise), for ``fit=spex``.

    With ``classes``, every player also gets a class drawn uniformly from ``0..classes - 1``
    (``<run_dir>/planted/labels.npy``), as a run imported with ``source.labels`` has them, for
    the class quotas of pruning and the class tables of the report. They change no margin, so
    they are not part of the sweep's identity.
    """
    if classes is not None and classes < 1:
        raise ValueError(f"write_planted_sweep: classes={classes} must be at least 1")
    for name, value, least in (("n", n, 1), ("T", T, 1), ("num_masks", num_masks, 1), ("repeats", repeats, 1),
                               ("models_per_shard", models_per_shard, 1), ("noise", noise, 0)):
        if value < least:
            raise ValueError(f"write_planted_sweep: {name}={value} must be at least {least}")
    if spex_budget is None:
        design = MaskDesign("bernoulli", n, alpha, seed)
    else:
        design = MaskDesign("spex", n, seed=seed, budget=spex_budget, degree=spex_degree)
        if num_masks > design.num_masks:
            raise ValueError(f"write_planted_sweep: num_masks={num_masks} is more than the {design.num_masks} "
                             f"masks of the SPEX design")
    # every setting of the game, defaults included, so that a default passed explicitly is the same sweep
    defaults = {name: p.default for name, p in inspect.signature(planted_game).parameters.items()
                if name not in ("n", "seed")}
    if set(game) - set(defaults):
        raise ValueError(f"write_planted_sweep: unknown game settings {sorted(set(game) - set(defaults))}; "
                         f"planted_game takes {', '.join(defaults)}")
    game = _settings(defaults | game)
    params = {"n": n, "T": T, "num_masks": num_masks, "repeats": repeats, "alpha": alpha, "noise": noise,
              "seed": seed, "game": game} | ({"spex_budget": spex_budget, "spex_degree": spex_degree}
                                             if spex_budget is not None else {})
    digest = short_hash(params)
    num_models = num_masks * repeats
    meta = run_meta(f"planted-{digest}", n, T, design.kind, alpha, seed, repeats, models_per_shard, num_models, digest,
                    spex_budget, spex_degree, dataset="planted")
    folder = RunFolder(run_dir)
    folder.check_sweep(meta)
    spectra, noise_sd = _spectra(n, T, alpha, noise, seed, game)
    if not folder.planted_truth.exists():
        write_frame(folder.planted_truth, _truth_table(spectra), params)
    if classes is not None:
        labels = np.random.default_rng([seed, _LABEL_STREAM]).integers(0, classes, n)
        write_atomic(folder.planted_labels, lambda tmp: np.save(open(tmp, "wb"), labels))
    games = _PlantedGames(spectra)
    del spectra
    written = []
    num_shards = -(-num_models // models_per_shard)
    for shard in tqdm(range(num_shards), desc="planted shards", unit="shard", disable=not progress):
        path = folder.shard(shard)
        if path.exists():
            check_identity(path, read_shard_meta(path), meta)
            continue
        models = range(shard * models_per_shard, min(num_models, (shard + 1) * models_per_shard))
        masks, margins, seeds = _planted_models(games, design, noise_sd, models, repeats, seed)
        records = [ModelRecord(i, i // repeats, i % repeats, model_seed, mask, margin, float("nan"), 0.0)
                   for i, model_seed, mask, margin in zip(models, seeds, masks, margins)]
        written.append(write_shard(path, records, meta | {"shard": shard}))
    return written


def _settings(game: dict) -> dict:
    """A sweep's game settings as its identity records them: ``duplicates`` as lists, and
    ``duplicates`` and ``tail_sd`` left out when unused, so that the sweeps written before they
    existed keep their fingerprint."""
    duplicates = [sorted(int(i) for i in group) for group in game.get("duplicates", ())]
    kept = {k: v for k, v in game.items() if k != "duplicates" and not (k == "tail_sd" and not v)}
    return kept | ({"duplicates": duplicates} if duplicates else {})


def _planted_models(games: _PlantedGames, design: MaskDesign, noise_sd: np.ndarray, models: range, repeats: int,
                    seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A block of consecutive models: their bool masks ``[len, n]``, float32 margins ``[len, T]``
    (the games' values plus each model's seed noise) and training seeds."""
    first = models[0] // repeats
    masks = np.stack([design.mask(j) for j in range(first, models[-1] // repeats + 1)])
    values = games(masks)
    seeds = [training_seed(seed, i) for i in models]
    rows = np.array([i // repeats - first for i in models])
    noise = np.stack([np.random.default_rng(s).standard_normal(len(noise_sd)) for s in seeds])
    return masks[rows], (values[rows] + noise_sd * noise).astype(np.float32), seeds


def planted_release_bytes(n: int, T: int, num_models: int, n_mains: int | None = None, tail_sd: float = 0.0,
                          **game) -> int:
    """What :func:`write_planted_release` writes, in bytes: the masks (one byte a player and
    model), the float16 margins, the labels, and about 32 bytes a row of the truth (one row per
    main effect of every target: all ``n`` players without ``n_mains`` or with a tail)."""
    header = 128  # an .npy header
    terms = n if n_mains is None or tail_sd else n_mains + 20  # + the planted groups' members and terms
    return 3 * header + num_models * n + 2 * num_models * T + 8 * n + 32 * T * terms


def write_planted_release(folder: str | os.PathLike, n: int, T: int, num_models: int, alpha: float = 0.5,
                          noise: float = 0.5, seed: int = 0, num_classes: int = 10, progress: bool = True,
                          block: int = 1000, announce=None, **game) -> dict[str, Path]:
    """Planted games in the datamodels release's format (:mod:`datamodels.sweep.importing`): the files
    ``train_masks_<pct>pct.npy`` (bool ``[num_models, n]``), ``test_margins_<pct>pct.npy``
    (float16 ``[num_models, T]``), ``labels.npy`` (int64 ``[n]``, uniform classes) and
    ``truth.parquet`` (the spectra, as in a planted sweep).

    Model ``i`` is model ``i`` of ``write_planted_sweep(..., repeats=1)`` with the same settings
    (mask, noise, game), its margins rounded to float16 as the release stores them. Written
    ``block`` models at a time into memory-mapped files (``np.lib.format.open_memmap``), so memory
    stays bounded at any size; each file is built under a hidden name and renamed when whole.
    Refused before anything is written when the folder's disk has less free space than
    :func:`planted_release_bytes`; ``announce`` (e.g. ``print``) is told the size first.
    """
    folder = Path(folder)
    needed = planted_release_bytes(n, T, num_models, **game)
    what = f"the planted release ({num_models:,} models x {n:,} players, {T:,} targets)"
    if announce is not None:
        announce(f"{folder}: writing {what}: {size_text(needed)}")
    check_free_space(folder, needed, what)
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {name: p.default for name, p in inspect.signature(planted_game).parameters.items()
                if name not in ("n", "seed")}
    game = _settings(defaults | game)
    design = MaskDesign("bernoulli", n, alpha, seed)
    spectra, noise_sd = _spectra(n, T, alpha, noise, seed, game)
    masks_path, margins_path = release_files(folder, alpha)
    paths = {"masks": masks_path, "margins": margins_path, "labels": folder / "labels.npy",
             "truth": folder / "truth.parquet"}
    params = {"n": n, "T": T, "num_masks": num_models, "repeats": 1, "alpha": alpha, "noise": noise, "seed": seed,
              "game": game, "format": "release"}
    write_frame(paths["truth"], _truth_table(spectra), params)
    games = _PlantedGames(spectra)
    del spectra
    hidden = {key: paths[key].with_name(f".{paths[key].name}.tmp") for key in ("masks", "margins")}
    masks = np.lib.format.open_memmap(hidden["masks"], "w+", bool, (num_models, n))
    margins = np.lib.format.open_memmap(hidden["margins"], "w+", np.float16, (num_models, T))
    for start in tqdm(range(0, num_models, block), desc="planted release", unit="block", disable=not progress):
        models = range(start, min(num_models, start + block))
        masks[models.start:models.stop], block_margins, _ = _planted_models(games, design, noise_sd, models, 1, seed)
        margins[models.start:models.stop] = block_margins
        masks.flush()  # written blocks leave memory as they go
        margins.flush()
    del masks, margins
    for key, path in hidden.items():
        os.replace(path, paths[key])
    labels = np.random.default_rng([seed, _LABEL_STREAM]).integers(0, num_classes, n)
    with open(paths["labels"], "wb") as f:
        np.save(f, labels.astype(np.int64))
    return paths


def read_planted_truth(run_dir: str | os.PathLike) -> dict[int, dict]:
    """Target -> the Möbius spectrum planted for it (``{(): constant, (i,): main, (i, j): pair, ...}``),
    from a planted run folder (its ``planted/truth.parquet``), a planted release's folder (the
    ``truth.parquet`` beside its ``.npy`` files, as ``--release DIR`` writes it) or a truth file."""
    path = Path(run_dir)
    if path.suffix != ".parquet":
        found = [p for p in (RunFolder(path).planted_truth, path / "truth.parquet") if p.is_file()]
        if not found:
            raise StoreError(f"{path} holds no planted truth: neither {RunFolder(path).planted_truth} (a planted run "
                             f"folder) nor {path / 'truth.parquet'} (a planted release)")
        path = found[0]
    frame, _ = read_frame(path, "planted")
    truth: dict[int, dict] = {}
    for t, members, value in zip(frame["target"], frame["members"], frame["mobius"]):
        truth.setdefault(int(t), {})[tuple(int(i) for i in members)] = float(value)
    return truth


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodels.sweep.planted", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run-dir", help="write a planted sweep (run folder)")
    where.add_argument("--release", help="write the datamodels release's files instead (datamodels.sweep.importing)")
    parser.add_argument("--n", type=int, required=True, help="players")
    parser.add_argument("--targets", type=int, required=True, help="targets T")
    parser.add_argument("--masks", type=int, required=True, help="distinct masks (--release: models)")
    parser.add_argument("--repeats", type=int, default=1, help="models (seeds) per mask")
    parser.add_argument("--alpha", type=float, default=0.5, help="probability that a mask keeps a player")
    parser.add_argument("--noise", type=float, default=0.5, help="seed-noise sd, as a fraction of the game's sd")
    parser.add_argument("--n-mains", type=int, default=None, help="players with a main effect per target (all)")
    parser.add_argument("--tail-sd", type=float, default=0.0,
                        help="sd of a faint main effect on every player, on top of the rest (0: no tail)")
    parser.add_argument("--duplicates", default="",
                        help="groups of duplicate players planted in every target, e.g. '0,1;2,3,4' (planted_game)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=None,
                        help="give every player one of this many classes (planted/labels.npy)")
    parser.add_argument("--models-per-shard", type=int, default=1000)
    args = parser.parse_args(argv)
    duplicates = [[int(i) for i in group.split(",")] for group in args.duplicates.split(";") if group.strip()]
    if args.release:
        try:
            paths = write_planted_release(args.release, args.n, args.targets, args.masks, args.alpha, args.noise,
                                          args.seed, announce=print, n_mains=args.n_mains, tail_sd=args.tail_sd,
                                          duplicates=duplicates)
        except UserError as err:
            parser.exit(1, f"error: {err}\n")
        print(f"{args.release}: {', '.join(path.name for path in paths.values())} ({args.masks} models, n={args.n}, "
              f"T={args.targets})")
        return
    written = write_planted_sweep(args.run_dir, args.n, args.targets, args.masks, args.repeats, args.alpha,
                                  args.noise, args.models_per_shard, args.seed, classes=args.classes,
                                  n_mains=args.n_mains, tail_sd=args.tail_sd, duplicates=duplicates)
    num_shards = -(-args.masks * args.repeats // args.models_per_shard)
    print(f"{args.run_dir}: {len(written)} shards written, {num_shards - len(written)} already present "
          f"({args.masks * args.repeats} models, n={args.n}, T={args.targets}); "
          f"truth in {RunFolder(args.run_dir).planted_truth}")


if __name__ == "__main__":
    main()
