"""The fit-ready layout against the shards it is derived from (datamodels/store/fit_ready.py, jobs/collect.py)."""

import json
import multiprocessing
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_job

from datamodels.store import fit_ready
from datamodels.store.fit_ready import StaleLayoutError, build_fit_ready, open_fit_ready
from datamodels.sweep.planted import write_planted_sweep
from datamodels.run.folder import RunFolder, shard_path
from datamodels.store.shards import StoreError, load_sweep, read_models, read_shard_meta, write_shard

# n not a multiple of 8 (padding bits); 300 models in 5 shards, the last one short.
N, T, MASKS, REPEATS, PER_SHARD = 45, 6, 150, 2, 70


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    run = tmp_path_factory.mktemp("planted") / "run"
    write_planted_sweep(run, N, T, MASKS, repeats=REPEATS, models_per_shard=PER_SHARD, progress=False, n_mains=10)
    return run


@pytest.fixture
def run(template, tmp_path):
    return shutil.copytree(template, tmp_path / "run")


def snapshot(root):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


def assert_equals_the_shards(layout, run):
    sweep = load_sweep(run)
    assert isinstance(layout.masks.packed, np.memmap) and isinstance(layout.target_margins, np.memmap)
    assert layout.masks.shape == (len(sweep.model_index), N)
    np.testing.assert_array_equal(layout.masks.unpack(), sweep.masks)
    np.testing.assert_array_equal(layout.masks.packed, sweep.packed_masks)
    np.testing.assert_array_equal(layout.target_margins, sweep.margins.T)
    for name in ("model_index", "mask_id", "repeat", "seed"):
        np.testing.assert_array_equal(getattr(layout, name), getattr(sweep, name))
    models = pq.read_table(layout.path / "models.parquet").to_pandas()
    np.testing.assert_array_equal(models["train_seconds"], sweep.train_seconds)
    assert layout.meta == json.loads((run / "run.json").read_text())
    return sweep


def test_memory_mapped_layout_equals_the_shards_read_in_memory(run):
    layout = build_fit_ready(run, progress=False)
    assert layout.path == RunFolder(run).fit_ready
    assert len(assert_equals_the_shards(layout, run).model_index) == MASKS * REPEATS
    assert layout.target_margins.flags.c_contiguous and layout.target_margins.shape == (T, MASKS * REPEATS)
    assert_equals_the_shards(open_fit_ready(run, build_missing=False), run)
    assert sorted(p.name for p in run.iterdir()) == ["fit_ready", "planted", "run.json", "shards"]  # no leftovers


def test_target_margins_are_the_sweeps_margins_transposed_and_the_old_name_warns(run):
    layout, sweep = open_fit_ready(run, progress=False), load_sweep(run)
    m = MASKS * REPEATS
    assert layout.target_margins.shape == (T, m) and sweep.margins.shape == (m, T)  # target- vs model-major
    np.testing.assert_array_equal(layout.target_margins.T, sweep.margins)
    with pytest.warns(DeprecationWarning, match=r"target_margins.*\[T, m\].*target-major.*next release"):
        old = layout.margins
    assert old is layout.target_margins


def test_a_partial_sweep_is_laid_out_with_the_models_present(run):
    shard = run / "shards" / "shard-000001.parquet"
    records, meta = read_models(shard, N), read_shard_meta(shard)
    shard.unlink()
    write_shard(shard, [records[i] for i in (69, 0, 30)], meta)  # out of order, with gaps
    layout = open_fit_ready(run, progress=False)  # missing: built
    sweep = assert_equals_the_shards(layout, run)
    assert len(sweep.model_index) == MASKS * REPEATS - PER_SHARD + 3
    np.testing.assert_array_equal(layout.model_index[PER_SHARD:PER_SHARD + 4], [70, 100, 139, 140])


def duplicate_of_shard_0(run, shard, change=None):
    """A shard file holding three models of shard 0 again, the first changed by ``change``."""
    records = read_models(run / "shards" / "shard-000000.parquet", N)[:3]
    if change:
        change(records[0])
    meta = read_shard_meta(run / "shards" / "shard-000000.parquet") | {"shard": shard}
    write_shard(shard_path(run / "shards", shard), records, meta)


def test_an_identical_duplicate_is_kept_once_and_a_differing_one_refused(run):
    duplicate_of_shard_0(run, 7)
    layout = build_fit_ready(run, progress=False)
    assert len(assert_equals_the_shards(layout, run).model_index) == MASKS * REPEATS
    shutil.rmtree(layout.path)

    def nudge(record):
        record.margins = record.margins + np.float32(1e-3)

    (run / "shards" / "shard-000007.parquet").unlink()
    duplicate_of_shard_0(run, 7, nudge)
    with pytest.raises(StoreError, match="model 0 appears with different results in shard-000000.parquet, "
                                         "shard-000007.parquet; remove one of them"):
        build_fit_ready(run, progress=False)
    with pytest.raises(StoreError, match="model 0 appears with different results"):  # the same rule
        load_sweep(run)
    assert not (RunFolder(run).fit_ready).exists() and not list(run.glob(".fit_ready*"))


def test_a_shard_added_or_removed_since_is_refused_and_nothing_is_touched(run):
    shutil.move(run / "shards" / "shard-000004.parquet", run / "aside.parquet")
    build_fit_ready(run, progress=False)
    shutil.move(run / "aside.parquet", run / "shards" / "shard-000004.parquet")
    before = snapshot(run)
    for build_missing in (True, False):
        with pytest.raises(StaleLayoutError, match=rf"{RunFolder(run).fit_ready} was built from 4 shards; "
                                                   rf"shard-000004.parquet was added since\. Run jobs/collect.py "
                                                   rf"run_dir={run} to rebuild it\."):
            open_fit_ready(run, build_missing=build_missing, progress=False)
    assert snapshot(run) == before
    (run / "shards" / "shard-000000.parquet").unlink()
    (run / "shards" / "shard-000001.parquet").unlink()
    with pytest.raises(StaleLayoutError, match="shard-000004.parquet was added since; shard-000000.parquet, "
                                               "shard-000001.parquet were removed since"):
        open_fit_ready(run, progress=False)


def test_a_replaced_shard_is_refused_by_size_or_by_time(run):
    build_fit_ready(run, progress=False)
    shard = run / "shards" / "shard-000004.parquet"
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # same bytes, rewritten
    with pytest.raises(StaleLayoutError, match="shard-000004.parquet was replaced since"):
        open_fit_ready(run, progress=False)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert_equals_the_shards(open_fit_ready(run, progress=False), run)
    records, meta = read_models(shard, N)[:5], read_shard_meta(shard)
    shard.unlink()
    write_shard(shard, records, meta)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time, other size
    with pytest.raises(StaleLayoutError, match="shard-000004.parquet was replaced since"):
        open_fit_ready(run, progress=False)
    assert_equals_the_shards(build_fit_ready(run, progress=False), run)  # rebuilt in place


@pytest.mark.parametrize("manifest,message", [
    ("{not json", r"manifest.json is corrupt"),
    (json.dumps({"format": "someone.else/3"}), r"manifest.json has format 'someone.else/3', expected "
                                               r"'datamodels.fit_ready/1': not a fit-ready layout"),
    (json.dumps(["a", "list"]), r"manifest.json has format 'list'"),
    (None, r"fit_ready holds no manifest.json: it is not a fit-ready layout of this package"),
    ("other run", r"manifest.json belongs to a different sweep: fingerprint='planted-other'"),
])
def test_a_foreign_or_corrupt_layout_is_refused_naming_the_file_and_kept(run, manifest, message):
    build_fit_ready(run, progress=False)
    path = RunFolder(run).fit_ready / "manifest.json"
    if manifest == "other run":
        other = json.loads(path.read_text())
        other["run"]["fingerprint"] = "planted-other"
        path.write_text(json.dumps(other))
    elif manifest is None:
        path.unlink()
    else:
        path.write_text(manifest)
    before = snapshot(run)
    with pytest.raises(StoreError, match=message):
        open_fit_ready(run, progress=False)
    with pytest.raises(StoreError, match=message):  # a rebuild does not replace what is not this run's layout
        build_fit_ready(run, progress=False)
    assert snapshot(run) == before


@pytest.mark.parametrize("name", ["datamodels.fit_ready/1", "datamodels.store.fit_ready/1"])
def test_a_layout_collected_by_an_earlier_release_opens_as_it_is(run, name):
    # Layouts written before the package move, and by the one release that named the format
    # after the module's new path, are the same format: opened, not rebuilt.
    build_fit_ready(run, progress=False)
    path = RunFolder(run).fit_ready / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(manifest | {"format": name}))
    before = snapshot(run)
    assert_equals_the_shards(open_fit_ready(run, progress=False), run)
    assert snapshot(run) == before


def test_a_killed_builder_neither_breaks_a_build_nor_passes_for_a_layout(run):
    for pid in (99999999, os.getpid()):  # another process's, and one that had this process id
        junk = run / f".fit_ready.{pid}.tmp"
        junk.mkdir()
        (junk / "masks.npy").write_bytes(b"\x93NUMPY half")
        (junk / "manifest.json").write_text("{}")
    with pytest.raises(StoreError, match=r"fit_ready does not exist: run jobs/collect.py"):
        open_fit_ready(run, build_missing=False)
    assert_equals_the_shards(build_fit_ready(run, progress=False), run)
    assert (run / ".fit_ready.99999999.tmp").exists()  # perhaps still running: left alone
    assert not (run / f".fit_ready.{os.getpid()}.tmp").exists()


def test_a_matching_layout_published_by_a_parallel_builder_is_used(run, monkeypatch, tmp_path):
    theirs = tmp_path / "theirs"
    shutil.copytree(build_fit_ready(run, progress=False).path, theirs)
    before = snapshot(RunFolder(run).fit_ready)
    assert build_fit_ready(run, progress=False).path == RunFolder(run).fit_ready  # already there and current
    assert snapshot(RunFolder(run).fit_ready) == before
    write_layout, rename = fit_ready._write_layout, os.rename

    def publish_theirs(dst):
        if not os.path.exists(dst):
            shutil.copytree(theirs, dst)

    def racing_write(folder, *args):  # the other builder finishes while this one writes
        write_layout(folder, *args)
        publish_theirs(RunFolder(run).fit_ready)

    def racing_rename(src, dst):  # the other builder renames its layout in place just before this one
        if str(dst).endswith("fit_ready"):
            publish_theirs(dst)
        rename(src, dst)

    for patch in ((fit_ready, "_write_layout", racing_write), (fit_ready.os, "rename", racing_rename)):
        shutil.rmtree(RunFolder(run).fit_ready)
        with monkeypatch.context() as m:
            m.setattr(*patch)
            layout = build_fit_ready(run, progress=False)
        mine, copied = snapshot(layout.path), snapshot(theirs)
        assert {p.name: v for p, v in mine.items()} == {p.name: v for p, v in copied.items()}  # theirs (older)
        assert_equals_the_shards(layout, run)
        assert not list(run.glob(".fit_ready*"))


def test_non_finite_margins_of_a_foreign_writer_are_refused_naming_shard_and_model(run):
    path = run / "shards" / "shard-000002.parquet"
    table = pq.read_table(path)
    margins = table.column("margins").combine_chunks().flatten().to_numpy().reshape(-1, T).copy()
    margins[3, 1] = np.inf
    column = pa.FixedSizeListArray.from_arrays(pa.array(margins.ravel()), T)
    bad = table.set_column(table.schema.get_field_index("margins"), table.schema.field("margins"), column)
    path.unlink()
    pq.write_table(bad, path)
    model = table.column("model_index")[3].as_py()
    with pytest.raises(StoreError, match=rf"shard-000002.parquet: model {model} has non-finite margins"):
        build_fit_ready(run, progress=False)
    assert not (RunFolder(run).fit_ready).exists() and not list(run.glob(".fit_ready*"))


def child_reads(masks, players):
    return isinstance(masks.packed, np.memmap), masks.packed.filename, masks.columns(players)


@pytest.mark.slow
def test_workers_map_the_same_file_and_read_the_same_columns(run):
    masks = build_fit_ready(run, progress=False).masks
    players = [44, 0, 17, 8, 7]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        for view in (masks, masks[25:190:3]):
            mapped, filename, columns = pool.apply(child_reads, (view, players))
            assert mapped and str(filename) == str(RunFolder(run).fit_ready / "masks.npy")
            np.testing.assert_array_equal(columns, view.columns(players))


@pytest.mark.slow
def test_collect_job_builds_and_rebuilds_the_layout(run):
    shutil.move(run / "shards" / "shard-000003.parquet", run / "aside.parquet")
    proc = run_job("collect.py", f"run_dir={run}", "progress=false", check=False)
    assert proc.returncode == 1 and "missing model indices: 210-279" in proc.stdout  # still missing models ...
    assert f"fit-ready layout: {RunFolder(run).fit_ready} (230 models," in proc.stdout  # ... and laid out what is there
    fit = run_job("fit.py", "fit=linear", "fit.targets=[0]", f"run_dir={run}", "progress=false")
    assert "fitting 230 of the sweep's 300 models: the others are not collected" in fit.stdout + fit.stderr
    shutil.move(run / "aside.parquet", run / "shards" / "shard-000003.parquet")
    out = run_job("collect.py", f"run_dir={run}", "progress=false").stdout
    assert "the fit-ready layout was stale (shard-000003.parquet was added since): rebuilt" in out
    assert f"fit-ready layout: {RunFolder(run).fit_ready} (300 models," in out
    assert_equals_the_shards(open_fit_ready(run, build_missing=False), run)
    before = snapshot(RunFolder(run).fit_ready)
    out = run_job("collect.py", f"run_dir={run}", "progress=false").stdout
    assert "stale" not in out and "does not exist" not in out
    assert snapshot(RunFolder(run).fit_ready) == before
