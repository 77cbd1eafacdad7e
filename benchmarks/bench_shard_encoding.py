"""A shard's parquet encoding (``datamodels.store.shard_file.parquet_options``) against the dictionary
encoding of the margins the store used before, side by side: write and read time, file size.

    .venv/bin/python -m benchmarks.bench_shard_encoding
    .venv/bin/python -m benchmarks.bench_shard_encoding --models 1000 --n 50000 --targets 1000 10000

Each case is one shard of ``--models`` models: random packed masks over ``--n`` players and
normal margins over T targets, either float16 values widened to float32 (the datamodels
release, as the import stores it) or float32 values (a sweep's). The shard is written once by
``write_shard_columns``, read back, and that table is written ``--repeats`` times with each
encoding, alternating, into a temporary folder (the minimum time is reported) and read back
whole with ``pyarrow.parquet.read_table``.
"""

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.store.shard_file import SCALAR_COLUMNS, parquet_options, write_shard_columns


def dictionary_options(table) -> dict:
    """The store's encoding before: a dictionary for the margins, snappy everywhere."""
    scalars = [name for name in table.column_names if name not in ("mask", "margins")]
    return {"use_dictionary": [*scalars, "margins.list.element"], "write_statistics": scalars}


def timed(call, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def case(folder: Path, models: int, n: int, T: int, values: str, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    packed = rng.integers(0, 256, (models, (n + 7) // 8), dtype=np.uint8)
    margins = rng.normal(0, 2, (models, T)).astype(values).astype(np.float32)
    index = np.arange(models)
    scalars = {name: index for name in SCALAR_COLUMNS}
    source = write_shard_columns(folder / f"source-{T}-{values}.parquet", scalars, packed, margins,
                                 {"n": n, "T": T, "format": "bench"})
    table = pq.read_table(source)
    row = {}
    for name, options in (("dictionary", dictionary_options(table)), ("store", parquet_options(table))):
        path = folder / f"{name}.parquet"
        row[name] = {"write_s": timed(lambda: pq.write_table(table, path, row_group_size=1024, **options), repeats),
                     "read_s": timed(lambda: pq.read_table(path), repeats), "mb": path.stat().st_size / 1e6}
        if not pq.read_table(path).equals(table):
            raise SystemExit(f"{name}: the shard read back differs from the one written")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--targets", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    pin_threads()
    print(f"one shard of {args.models:,} models, n = {args.n:,}; {cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; best of {args.repeats}")
    print("| T | margins | dictionary: write / read / MB | store: write / read / MB | store / dictionary: write, size |")
    print("|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for T in args.targets:
            for values in ("float16", "float32"):
                r = case(Path(tmp), args.models, args.n, T, values, args.repeats)
                d, s = r["dictionary"], r["store"]
                rows.append({"models": args.models, "n": args.n, "T": T, "margins": values}
                            | {f"{name}_{key}": value for name, figures in r.items() for key, value in figures.items()})
                print(f"| {T:,} | {values} | {d['write_s'] * 1e3:.0f} ms / {d['read_s'] * 1e3:.0f} ms / {d['mb']:.1f} | "
                      f"{s['write_s'] * 1e3:.0f} ms / {s['read_s'] * 1e3:.0f} ms / {s['mb']:.1f} | "
                      f"{s['write_s'] / d['write_s']:.2f}x, {s['mb'] / d['mb']:.2f}x |", flush=True)
    save_results("bench_shard_encoding", rows)


if __name__ == "__main__":
    main()
