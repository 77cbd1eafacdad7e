"""The import of models trained elsewhere (datamodels.sweep.importing, its source's reader
datamodels.sweep.import_source, jobs/import_sweep.py), checked against the arrays the tests write
in the release's and the store's genuine layouts."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import compose_config, run_job
from datamodels.sweep import import_source, importing
from datamodels.sweep.data import write_cifar10_archive
from datamodels.sweep.importing import ImportSettings, ImportSourceError, plan_import, run_import, write_import
from datamodels.sweep.planted import read_planted_truth, write_planted_release, write_planted_sweep
from datamodels.sweep.run_data import RunData
from datamodels.run.folder import RunFolder
from datamodels.store.shards import load_sweep

M, N, T = 230, 40, 12


def release(folder, masks=None, margins=None, labels=None, seed=0):
    """A release-format pair (and labels) in ``folder``: bool masks, float16 margins."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    masks = rng.random((M, N)) < 0.3 if masks is None else masks
    margins = rng.normal(size=(M, T)).astype(np.float16) if margins is None else margins
    labels = rng.integers(0, 4, N) if labels is None else labels
    paths = {"masks": folder / "train_masks_30pct.npy", "margins": folder / "test_margins_30pct.npy",
             "labels": folder / "labels.npy"}
    for key, array in (("masks", masks), ("margins", margins), ("labels", labels)):
        np.save(paths[key], array)
    return paths, masks, margins, labels


def job_args(run_dir, paths, *more, dataset="none"):
    return [f"run_dir={run_dir}", f"dataset={dataset}", f"source.masks={paths['masks']}",
            f"source.margins={paths['margins']}", "source.models_per_shard=64", "progress=false", *more]


def snapshot(folder):
    """Every file under ``folder`` with its size and mtime (None when the folder does not exist)."""
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if "logs" not in p.relative_to(folder).parts}


@pytest.mark.slow
def test_release_import_is_the_arrays_and_collect_and_fit_read_it(tmp_path):
    paths, masks, margins, labels = release(tmp_path / "release")
    run_dir = tmp_path / "run"
    out = run_job("import_sweep.py", *job_args(run_dir, paths, "source.rows=10:210", "source.targets=[7,2,5]",
                                               f"source.labels={paths['labels']}")).stdout
    assert "200 models" in out and "4 shards written" in out
    sweep = load_sweep(run_dir, require_complete=True)
    assert np.array_equal(sweep.model_index, np.arange(200))
    assert np.array_equal(sweep.masks, masks[10:210])
    assert np.array_equal(sweep.margins, margins[10:210][:, [2, 5, 7]].astype(np.float32))  # increasing order
    run = RunFolder(run_dir).read_run()
    assert (run["n"], run["T"], run["design"], run["num_models"]) == (N, 3, "imported", 200)
    assert abs(run["alpha"] - masks[10:210].mean()) < 0.002  # measured on every row here (fewer than 2,048)
    assert np.array_equal(RunData.open(run_dir).player_labels, labels)  # as the later stages read them
    assert np.array_equal(np.load(RunFolder(run_dir).imported_rows), np.arange(10, 210))
    assert json.loads(RunFolder(run_dir).imported_source.read_text())["targets"] == [2, 5, 7]
    assert "200 of 200 models present" in run_job("collect.py", f"run_dir={run_dir}", "progress=false").stdout
    assert "4 of 4 shards done" in run_job("status.py", f"run_dir={run_dir}").stdout
    run_job("fit.py", f"run_dir={run_dir}", "fit=linear", "progress=false")
    metrics = pq.read_table(RunFolder(run_dir).fit_metrics_file()).to_pandas()
    assert sorted(metrics["target"]) == [0, 1, 2]


def test_store_import_keeps_completed_rows_in_the_order_asked(tmp_path):
    rng = np.random.default_rng(1)
    store = tmp_path / "store"
    store.mkdir()
    masks = np.lib.format.open_memmap(store / "masks.npy", "w+", bool, (M, N))  # as the datamodels code does
    margins = np.lib.format.open_memmap(store / "margins.npy", "w+", np.float16, (M, T))
    completed = rng.random(M) < 0.7
    masks[completed] = rng.random((completed.sum(), N)) < 0.5
    margins[completed] = rng.normal(size=(completed.sum(), T))
    np.save(store / "_completed.npy", completed)
    masks.flush(), margins.flush()
    order = np.array([200, 3, 150, 4, 5, 99, 7, 180])
    (tmp_path / "rows.txt").write_text("\n".join(map(str, order)))
    settings = ImportSettings(store=str(store), rows=str(tmp_path / "rows.txt"), targets="2:6", models_per_shard=3)
    result = run_import(tmp_path / "run", settings, config=compose_config(["dataset=none"]), progress=False)
    kept = order[completed[order]]
    assert (len(result.written), result.outputs["present"]) == (-(-len(kept) // 3), 0)
    assert np.array_equal(result.outputs["plan"].rows, kept)
    sweep = load_sweep(tmp_path / "run")
    assert np.array_equal(sweep.masks, np.asarray(masks)[kept])
    assert np.array_equal(sweep.margins, np.asarray(margins)[kept][:, 2:6].astype(np.float32))


def test_nan_rows_are_named_or_dropped(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    margins = rng.normal(size=(M, T)).astype(np.float16)
    bad = [165, 166, 167, 210]  # in the fourth and fifth shards of 50 models: found after three are written
    margins[bad, 3] = [np.nan, np.inf, -np.inf, np.nan]
    margins[100, 0] = np.nan  # not a selected column: no matter
    paths, masks, _, _ = release(tmp_path / "release", margins=margins)
    base = dict(masks=str(paths["masks"]), margins=str(paths["margins"]), targets=[1, 3], models_per_shard=50)
    written, write = [], importing.write_shard_columns

    def counted(path, *args):
        written.append(path)
        return write(path, *args)

    monkeypatch.setattr(importing, "write_shard_columns", counted)
    with pytest.raises(ImportSourceError, match=r"^4 of 230 rows have NaN or infinite margins \(source rows "
                                                r"165-167, 210\); source.nan=drop imports the others"):
        run_import(tmp_path / "run", ImportSettings(**base), config=compose_config(["dataset=none"]),
                   progress=False)
    assert len(written) == 3 and not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]  # removed again
    monkeypatch.setattr(importing, "write_shard_columns", write)
    plan = run_import(tmp_path / "run", ImportSettings(**base, nan="drop"),
                      config=compose_config(["dataset=none"]), progress=False).outputs["plan"]
    kept = np.setdiff1d(np.arange(M), bad)
    assert np.array_equal(plan.rows, kept) and plan.record["dropped"] == 4
    assert np.array_equal(load_sweep(tmp_path / "run").masks, masks[kept])


def test_a_killed_import_resumes_with_its_missing_shards(tmp_path, monkeypatch):
    paths, masks, margins, _ = release(tmp_path / "release")
    settings = ImportSettings(masks=str(paths["masks"]), margins=str(paths["margins"]), models_per_shard=50)
    config = compose_config(["dataset=none"])
    real, calls = importing.write_shard_columns, []

    def killed_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while it writes the third shard
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(importing, "write_shard_columns", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_import(tmp_path / "run", settings, config=config, progress=False)
    monkeypatch.setattr(importing, "write_shard_columns", real)
    before = snapshot(RunFolder(tmp_path / "run").shards)
    assert sorted(before) == ["shard-000000.parquet", "shard-000001.parquet"]
    result = run_import(tmp_path / "run", settings, config=config, progress=False)
    assert [p.name for p in result.written] == [f"shard-00000{s}.parquet" for s in (2, 3, 4)]
    assert result.outputs["present"] == 2 and not result.up_to_date
    after = snapshot(RunFolder(tmp_path / "run").shards)
    assert all(after[name] == before[name] for name in before)  # the finished shards were not rewritten
    sweep = load_sweep(tmp_path / "run", require_complete=True)
    assert np.array_equal(sweep.masks, masks) and np.array_equal(sweep.margins, margins.astype(np.float32))


def test_masks_found_not_binary_while_writing_leave_nothing(tmp_path):
    paths, masks, _, _ = release(tmp_path / "release")
    settings = ImportSettings(masks=str(paths["masks"]), margins=str(paths["margins"]), models_per_shard=50)
    plan = plan_import(settings, compose_config(["dataset=none"]), progress=False)
    raw = masks.view(np.uint8).copy()
    raw[220, 9] = 2  # a bool file may hold any byte; this one appears after four shards are written
    np.save(paths["masks"], raw.view(bool))
    with pytest.raises(ImportSourceError, match="source row 220, column 9 holds 2"):
        write_import(plan, tmp_path / "run", progress=False)
    assert snapshot(tmp_path / "run") in (None, {})


def cifar_archive(folder, n_train=N, n_test=T, seed=3):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n_train + n_test)
    md5 = write_cifar10_archive(folder / "cifar-10-binary.tar.gz", images, labels, n_test)
    return [f"dataset.options.root={folder}", f"dataset.options.md5={md5}", "dataset.options.download=false"], labels


@pytest.mark.slow
def test_dataset_cifar10_links_train_images_and_the_chosen_test_images(tmp_path):
    from datamodels.sweep.stage import SweepRun

    options, labels = cifar_archive(tmp_path / "cifar")
    paths, _, _, _ = release(tmp_path / "release", labels=labels[:N])
    run_dir = tmp_path / "run"
    run_job("import_sweep.py", *job_args(run_dir, paths, "source.targets=[9,0,4]", f"source.labels={paths['labels']}",
                                         *options, dataset="cifar10"))
    run = SweepRun.open(run_dir)  # the data re-created from config.json agrees with run.json
    assert np.array_equal(run.data.splits["train"], np.arange(N))
    assert np.array_equal(run.data.splits["target"], N + np.array([0, 4, 9]))
    assert np.array_equal(run.data.splits["holdout"], N + np.setdiff1d(np.arange(T), [0, 4, 9]))
    assert run.meta["design"] == "imported" and run.n == N
    per_class = plan_import(ImportSettings(masks=str(paths["masks"]), margins=str(paths["margins"]),
                                           targets="per_class:1"), compose_config(["dataset=cifar10", *options]),
                            progress=False)
    test_labels = labels[N:]
    assert list(per_class.targets) == sorted(int(np.flatnonzero(test_labels == c)[0]) for c in np.unique(test_labels))
    again = run_job("import_sweep.py", *job_args(run_dir, paths, "source.targets=[9,0,4]",
                                                 f"source.labels={paths['labels']}", *options, dataset="cifar10"))
    assert "0 shards written, 4 already present" in again.stdout


def corrupt(tmp_path, case):
    """The job arguments of one bad input, and the folder it must leave untouched."""
    paths, masks, margins, labels = release(tmp_path / "release")
    run_dir = tmp_path / "run"
    if case == "rows differ":
        np.save(paths["margins"], margins[:-1])
    elif case == "masks not 0/1":
        np.save(paths["masks"], masks.astype(np.int8) * 3)
    elif case == "labels width":
        np.save(paths["labels"], labels[:-1])
    elif case == "nan":
        margins[17, 2] = np.nan
        np.save(paths["margins"], margins)
    elif case == "truncated":
        data = paths["masks"].read_bytes()
        paths["masks"].write_bytes(data[: len(data) // 2])
    elif case == "another run":
        other, _, _, _ = release(tmp_path / "other", seed=9)
        run_job("import_sweep.py", *job_args(run_dir, other))
    elif case == "not a run":
        run_dir.mkdir()
        (run_dir / "notes.txt").write_text("mine")
    elif case == "dataset width":
        options, _ = cifar_archive(tmp_path / "cifar", n_train=N + 1)
        return job_args(run_dir, paths, *options, dataset="cifar10"), run_dir
    return job_args(run_dir, paths, f"source.labels={paths['labels']}"), run_dir


BAD = {"rows differ": "the masks hold 230 rows and the margins 229", "masks not 0/1": "masks are not 0/1",
       "labels width": "source.labels: .* must hold 40 non-negative integers", "truncated": "not a whole .npy file",
       "nan": r"1 of 230 rows have NaN or infinite margins \(source rows 17\)", "another run": "different sweep",
       "not a run": "not a run folder", "dataset width": "masks have 40 columns .* has 41 train and 12 test images"}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, case):
    import re

    args, run_dir = corrupt(tmp_path, case)
    before = snapshot(run_dir)
    proc = run_job("import_sweep.py", *args, check=False)
    # the one line said before writing (what the import reads and writes) is all it prints
    assert proc.returncode == 1 and all(line.startswith("import: ") for line in proc.stdout.splitlines())
    assert len(proc.stderr.strip().splitlines()) == 1 and re.search(BAD[case], proc.stderr), proc.stderr
    assert snapshot(run_dir) == before


def test_planted_release_is_the_planted_sweep_in_float16(tmp_path):
    game = dict(n_mains=10, n_synergy=1, n_redundancy=1, n_triples=0)
    paths = write_planted_release(tmp_path / "release", 30, 4, 25, alpha=0.5, seed=4, progress=False, block=7, **game)
    assert sorted(p.name for p in (tmp_path / "release").iterdir()) == [
        "labels.npy", "test_margins_50pct.npy", "train_masks_50pct.npy", "truth.parquet"]
    write_planted_sweep(tmp_path / "sweep", 30, 4, 25, alpha=0.5, seed=4, progress=False, models_per_shard=10, **game)
    sweep = load_sweep(tmp_path / "sweep")
    masks, margins = np.load(paths["masks"]), np.load(paths["margins"])
    assert masks.dtype == bool and margins.dtype == np.float16
    assert np.array_equal(masks, sweep.masks) and np.array_equal(margins, sweep.margins.astype(np.float16))
    assert read_planted_truth(paths["truth"]) == read_planted_truth(tmp_path / "sweep")
    labels = np.load(paths["labels"])
    assert labels.shape == (30,) and labels.min() >= 0 and labels.max() < 10


def test_masks_are_packed_as_numpy_packs_them_and_a_bad_value_is_named_where_it_is():
    rng = np.random.default_rng(3)
    block = (rng.random((37, 13)) < 0.5).astype(np.uint8)  # rows not a multiple of the 16 packed at a time
    rows = np.arange(100, 137)
    assert np.array_equal(import_source.packed_masks(block, rows), np.packbits(block.astype(bool), axis=1))
    assert np.array_equal(import_source.packed_masks(block.view(bool), rows), np.packbits(block.astype(bool), axis=1))
    block[33, 5] = 2  # in the third block of 16 rows
    with pytest.raises(ImportSourceError, match="source row 133, column 5 holds 2"):
        import_source.packed_masks(block, rows)


@pytest.mark.parametrize("setting,message", [
    ("source.targets=0:1000", "source.targets=0:1000: the source has 12 margin columns (0..11); a range a:b must "
                              "lie within 0:12"),
    ("source.rows=100:300", "source.rows=100:300: the source has 230 rows (0..229); a range a:b must lie within 0:230"),
    ("source.targets=[3,12]", "source.targets: indices 3..12 are outside 0..11 (the source has 12 margin columns)"),
])
@pytest.mark.slow
def test_a_selection_larger_than_the_data_is_refused_naming_its_size(tmp_path, setting, message):
    paths, _, _, _ = release(tmp_path / "release")
    proc = run_job("import_sweep.py", *job_args(tmp_path / "run", paths, setting), check=False)
    assert proc.returncode == 1 and proc.stdout == ""  # refused before anything is said or written
    assert proc.stderr.strip().splitlines() == [f"error: {message}"]
    assert snapshot(tmp_path / "run") in (None, {})


def test_ranges_within_the_data_still_select_as_slices():
    assert np.array_equal(import_source.selection("2:", 6, "source.rows"), [2, 3, 4, 5])
    assert np.array_equal(import_source.selection("-2:", 6, "source.rows"), [4, 5])
    assert np.array_equal(import_source.selection("0:6", 6, "source.rows"), np.arange(6))
    with pytest.raises(ImportSourceError, match="source.rows=0:7: the source has 6 rows"):
        import_source.selection("0:7", 6, "source.rows")


@pytest.mark.slow
def test_the_import_says_what_it_reads_and_writes_before_writing(tmp_path):
    paths, _, _, _ = release(tmp_path / "release")
    out = run_job("import_sweep.py", *job_args(tmp_path / "run", paths, "source.targets=0:3")).stdout.splitlines()
    # 230 models x (5 bytes of packed mask + 3 float32 margins + 40 of scalars); reading 230 x (40 + 12 x 2) bytes
    assert out[0] == f"import: 230 models (n=40, T=3) in 4 shards, up to 13.1 kB into {tmp_path / 'run'}/shards, " \
                     f"reading 14.7 kB of the release"
    written = sum(p.stat().st_size for p in RunFolder(tmp_path / "run").shards.glob("*.parquet"))
    assert written > 0 and "4 shards written" in out[1]


@pytest.mark.slow
def test_the_documented_prune_runs_on_an_import_without_images(tmp_path):
    """docs/cifar10.md: import with dataset=none, fit, then python jobs/prune.py run_dir=... as printed."""
    from datamodels.fit.stage import FitSettings, run_fit

    paths, _, _, labels = release(tmp_path / "release")
    run_dir = tmp_path / "run"
    run_job("import_sweep.py", *job_args(run_dir, paths, "source.targets=0:2", f"source.labels={paths['labels']}"))
    for method in ("proxyspex", "linear"):
        run_fit(run_dir, FitSettings(engine=method, params={"cv": 2} if method == "linear" else {}, workers=1), progress=False)
    out = run_job("prune.py", f"run_dir={run_dir}", "prune.fractions=[0.5]", "progress=false").stdout.splitlines()
    assert out[0] == f"prune: left out el2n, ccs ({run_dir} has no dataset linked: they train on its images); " \
                     f"prune.methods=[...] chooses the methods"
    keep = pq.read_table(RunFolder(run_dir).keep_sets_file).to_pandas()
    assert list(keep["method"].unique()) == ["interactions", "linear", "random", "stratified"]
    assert "keep-sets (interactions, linear, random, stratified at fractions [0.5]" in out[1]
    # the same again: skipped, its inputs unchanged
    assert "skipped" in run_job("prune.py", f"run_dir={run_dir}", "prune.fractions=[0.5]", "progress=false").stdout
    # chosen explicitly, a method that trains is still refused in one line
    chosen = run_job("prune.py", f"run_dir={run_dir}", "prune.methods=[random,el2n]", "prune.fractions=[0.5]",
                     check=False)
    assert chosen.returncode == 1 and chosen.stderr.strip().splitlines() == [
        "error: pruning methods el2n rank players by EL2N, which trains models on the run's data, and this run has "
        "none linked: drop them from prune.methods"]
    # evaluating keep-sets retrains on the images: refused in one line as well
    evaluate = run_job("evaluate_pruning.py", f"run_dir={run_dir}", check=False)
    assert evaluate.returncode == 1 and len(evaluate.stderr.strip().splitlines()) == 1
    assert "evaluating keep-sets retrains models on the run's data" in evaluate.stderr
