import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from datamodels.store import shards as store
from datamodels.run.folder import RunFolder, shard_path
from datamodels.store.shards import ModelRecord, StoreError, collect, load_sweep, write_shard

N, T, PER_SHARD = 13, 5, 4
META = {"format": store.FORMAT, "fingerprint": "abc", "n": N, "T": T, "design": "bernoulli", "alpha": 0.5,
        "sweep_seed": 0, "repeats": 2, "models_per_shard": PER_SHARD, "num_models": 12, "config_hash": "h1",
        "version": "test"}


def record(i, rng=None, n=N, t=T):
    rng = rng or np.random.default_rng(i)
    return ModelRecord(i, i // 2, i % 2, 1000 + i, rng.random(n) < 0.5, rng.normal(size=t).astype(np.float32),
                       0.9, 0.1)


def write(shard_dir, shard, indices=None, meta=META):
    indices = range(shard * PER_SHARD, min(12, (shard + 1) * PER_SHARD)) if indices is None else indices
    records = [record(i, n=meta["n"], t=meta["T"]) for i in indices]
    return write_shard(shard_path(shard_dir, shard), records, meta | {"shard": shard})


def test_round_trip_masks_margins_and_indices(tmp_path):
    for shard in range(3):
        write(RunFolder(tmp_path).shards, shard)
    sweep = load_sweep(tmp_path)
    assert sweep.report.complete
    np.testing.assert_array_equal(sweep.model_index, np.arange(12))
    np.testing.assert_array_equal(sweep.mask_id, np.arange(12) // 2)
    assert sweep.masks.dtype == bool and sweep.masks.shape == (12, N)
    assert sweep.margins.dtype == np.float32 and sweep.margins.shape == (12, T)
    for i in range(12):
        np.testing.assert_array_equal(sweep.masks[i], record(i).mask)
        np.testing.assert_array_equal(sweep.margins[i], record(i).margins)
    subset = load_sweep(tmp_path, targets=[4, 1])
    np.testing.assert_array_equal(subset.margins, sweep.margins[:, [4, 1]])


def test_a_shards_folder_and_the_old_class_name_still_work_with_a_deprecation_warning(tmp_path):
    shards = RunFolder(tmp_path / "run").shards
    loose = tmp_path / "loose"  # shard files in a folder of another name
    for shard in range(3):
        write(shards, shard)
        write(loose, shard)
    current = load_sweep(tmp_path / "run")
    for folder in (shards, loose):
        with pytest.warns(DeprecationWarning, match="takes the run folder"):
            old = load_sweep(folder)
        np.testing.assert_array_equal(old.margins, current.margins)
        np.testing.assert_array_equal(old.packed_masks, current.packed_masks)
    from datamodels.store import shards

    assert isinstance(current, shards.SweepResults)
    with pytest.warns(DeprecationWarning, match="Sweep is renamed SweepResults"):
        assert shards.Sweep is shards.SweepResults  # the old name, one release


def test_shards_open_in_pandas_pyarrow_and_duckdb(tmp_path):
    for shard in range(3):
        write(tmp_path, shard)
    frame = pd.read_parquet(tmp_path / "shard-000001.parquet")
    assert list(frame.model_index) == [4, 5, 6, 7] and len(frame.margins[0]) == T
    meta = json.loads(pq.read_schema(tmp_path / "shard-000001.parquet").metadata[b"datamodels"])
    assert meta["fingerprint"] == "abc" and meta["shard"] == 1
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"select count(*), max(model_index) from read_parquet('{tmp_path}/shard-*.parquet')").fetchall()
    assert rows == [(12, 11)]
    margin = duckdb.sql(f"select margins[3] from read_parquet('{tmp_path}/shard-000000.parquet') "
                        f"where model_index = 2").fetchall()[0][0]
    assert margin == pytest.approx(float(record(2).margins[2]))


def test_missing_and_duplicated_indices_are_reported(tmp_path):
    shards = RunFolder(tmp_path).shards
    write(shards, 0)
    write(shards, 2, indices=[8, 9, 3])  # 3 duplicates shard 0; 10, 11 and shard 1 are missing
    report = collect(shards)
    np.testing.assert_array_equal(report.missing, [4, 5, 6, 7, 10, 11])
    assert report.duplicated == {3: ["shard-000000.parquet", "shard-000002.parquet"]}
    assert "missing model indices: 4-7, 10-11" in report.summary()
    assert report.missing_shards(PER_SHARD) == [1, 2]
    # identical duplicate rows are merged; the sweep still reports what is missing
    assert list(load_sweep(tmp_path).model_index) == [0, 1, 2, 3, 8, 9]
    with pytest.raises(StoreError, match="missing model indices: 4-7"):
        load_sweep(tmp_path, require_complete=True)


def test_conflicting_duplicates_are_refused(tmp_path):
    shards = RunFolder(tmp_path).shards
    write(shards, 0)
    write_shard(shard_path(shards, 2), [record(3, np.random.default_rng(99))], META | {"shard": 2})
    with pytest.raises(StoreError, match="model 3 appears with different results"):
        load_sweep(tmp_path)


@pytest.mark.parametrize("key,value", [("fingerprint", "other"), ("n", N + 1), ("T", T + 1), ("design", "fixed_size"),
                                       ("config_hash", "h2")])
def test_collect_refuses_a_foreign_shard_and_names_it(tmp_path, key, value):
    write(tmp_path, 0)
    before = (tmp_path / "shard-000000.parquet").read_bytes()
    write(tmp_path, 1, meta=META | {key: value})
    with pytest.raises(StoreError, match=rf"shard-000001.parquet belongs to a different sweep: {key}="):
        collect(tmp_path)
    assert (tmp_path / "shard-000000.parquet").read_bytes() == before
    assert (tmp_path / "shard-000001.parquet").exists()  # refused, never deleted


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    write(tmp_path, 0)
    (tmp_path / "shard-000001.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(StoreError, match="shard-000001.parquet is not a readable parquet file"):
        collect(tmp_path)
    (tmp_path / "shard-000001.parquet").unlink()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "shard-000001.parquet")
    with pytest.raises(StoreError, match="shard-000001.parquet has no 'datamodels' metadata"):
        collect(tmp_path)
    (tmp_path / "shard-000001.parquet").unlink()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not shards of this package: notes.txt"):
        collect(tmp_path)


def test_write_is_atomic_when_the_writer_crashes(tmp_path, monkeypatch):
    def crash(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(store.pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, 0)
    assert list(tmp_path.iterdir()) == []  # neither a partial shard nor a temporary file is left


def test_shards_are_never_overwritten_and_bad_rows_never_written(tmp_path):
    write(tmp_path, 0)
    with pytest.raises(StoreError, match="already exists"):
        write(tmp_path, 0)
    bad = record(4)
    bad.margins[1] = np.nan
    with pytest.raises(StoreError, match="model 4 has non-finite margins"):
        write_shard(shard_path(tmp_path, 1), [bad], META | {"shard": 1})
    assert not shard_path(tmp_path, 1).exists()


def test_a_run_folder_holding_other_files_or_another_sweep_is_refused(tmp_path):
    RunFolder(tmp_path / "run").check_sweep(META)
    RunFolder(tmp_path / "run").check_sweep(META)  # the same sweep may claim it again
    with pytest.raises(StoreError, match="run.json belongs to a different sweep: fingerprint="):
        RunFolder(tmp_path / "run").check_sweep(META | {"fingerprint": "zzz"})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="not a run folder of this package"):
        RunFolder(tmp_path / "mine").check_sweep(META)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
