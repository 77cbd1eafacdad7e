"""The import of the datamodels release format: its time against reading the two files once, and
its peak memory.

    make bench-import        # = .venv/bin/python -m benchmarks.bench_import
    .venv/bin/python -m benchmarks.bench_import --models 20000 --n 50000 --targets 1000

A planted release (``python -m datamodels.sweep.planted --release``: bool masks ``[M, n]``, float16
margins ``[M, T]``) is written under ``--dir`` (reused when already there), then, in one run:
reading the two files once (``np.load(mmap_mode='r')``, summed in chunks of 1,000 rows, in a
process of its own), ``jobs/import_sweep.py`` exactly as a user runs it (into a fresh run
folder), and the read again; with ``--cache warm`` the files are in the page cache for all
three, with ``--cache cold`` they are dropped from it before each (``posix_fadvise``), so
every step reads them from the disk (both by default). Reported: wall time of each, the import's time over the read's, and
peak memory of the import's process tree (summed RSS and PSS, sampled every 0.25 s;
``benchmarks.harness.run_measured``). Goals (issue 22): peak <= 2 GB whatever M, time <= 2x a read.

Free disk is checked first: the release (M x (n + 2T) bytes) and the run (M x (n/8 + 4T)
bytes) must fit with 10% to spare, else M is reduced, and the output says so.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np

from benchmarks.harness import ROOT, cpu_name, pin_threads, run_measured, save_results


def read_once(paths: list[str], rows: int = 1000) -> float:
    """Every byte of the files read through ``np.load(mmap_mode='r')``, a block of rows at a time."""
    total = 0.0
    for path in paths:
        array = np.load(path, mmap_mode="r")
        for start in range(0, len(array), rows):
            block = array[start:start + rows]
            # the cheapest full pass numpy offers on each: a population count of masks, a float sum of margins
            total += np.count_nonzero(block) if block.dtype == bool else float(block.sum(dtype=np.float64))
    return total


def evict(paths) -> None:
    """Drop the files' pages from the page cache (``POSIX_FADV_DONTNEED``; no root needed), so
    that the next reader fetches them from the disk, as the first read of a downloaded release does."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def needed_bytes(M: int, n: int, T: int) -> int:
    return M * (n + 2 * T) + M * (n // 8 + 4 * T)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--dir", default="runs/bench-import")
    parser.add_argument("--cache", nargs="+", choices=("warm", "cold"), default=["warm", "cold"],
                        help="where the source is when each step starts: in the page cache (warm: memory speed, "
                             "the encoding is the floor) or dropped from it (cold: read from the disk, as a "
                             "freshly downloaded release larger than RAM is)")
    parser.add_argument("--read-once", nargs="+", help=argparse.SUPPRESS)  # the baseline's own process
    args = parser.parse_args(argv)
    pin_threads()
    if args.read_once:
        print(read_once(args.read_once))
        return
    # here, not at the top: the baseline's process (above) loads numpy alone, as a reader would
    from datamodels.sweep.import_source import release_files

    folder = (ROOT / args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    M, n, T = args.models, args.n, args.targets
    masks, margins = release_files(folder / "release", 0.5)
    have = masks.exists() and np.load(masks, mmap_mode="r").shape == (M, n) and \
        np.load(margins, mmap_mode="r").shape == (M, T)
    free = shutil.disk_usage(folder).free + (masks.stat().st_size + margins.stat().st_size if have else 0)
    if needed_bytes(M, n, T) * 1.1 > free:
        M = int(free / 1.1 / needed_bytes(1, n, T)) // 1000 * 1000
        print(f"only {free / 1e9:.1f} GB free under {folder}: M reduced to {M:,}")
        have = False
    python = sys.executable
    if not have:
        print(f"writing the planted release: M={M:,}, n={n:,}, T={T:,} ({needed_bytes(M, n, T) / 1e9:.1f} GB with the run)")
        subprocess.run([python, "-m", "datamodels.sweep.planted", "--release", str(folder / "release"), "--n", str(n),
                        "--targets", str(T), "--masks", str(M), "--n-mains", "100"], cwd=ROOT, check=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL)
    run_dir = folder / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    read = [python, "-m", "benchmarks.bench_import", "--read-once", str(masks), str(margins)]
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, {platform.python_version()}", "M": M, "n": n, "T": T,
              "source_gb": (masks.stat().st_size + margins.stat().st_size) / 1e9}
    print(f"import of M={M:,} x n={n:,} masks and T={T:,} margins ({result['source_gb']:.1f} GB) on {result['machine']}:")
    rows = []
    for cache in args.cache:
        def step(command, cache=cache):
            """cold: every step starts with the source out of the page cache; warm: all three find it there."""
            if cache == "cold":
                evict([masks, margins])
            return run_measured(command)

        if cache == "warm":
            read_once([str(masks), str(margins)])
        shutil.rmtree(run_dir, ignore_errors=True)
        first = step(read)
        imported = step([python, "jobs/import_sweep.py", f"run_dir={run_dir}", "dataset=none",
                         f"source.masks={masks}", f"source.margins={margins}", "progress=false"])
        second = step(read)
        size = sum(p.stat().st_size for p in (run_dir / "shards").iterdir()) / 1e9
        row = {"cache": cache, "shards_gb": round(size, 2),
               "read_once_s": [round(first["wall_s"], 1), round(second["wall_s"], 1)],
               "import_s": round(imported["wall_s"], 1),
               "import_over_read": round(imported["wall_s"] / np.mean([first["wall_s"], second["wall_s"]]), 2),
               "import_peak_rss_gb": round(imported["peak_rss_gb"], 2),
               "import_peak_pss_gb": round(imported["peak_pss_gb"], 2),
               "read_once_peak_rss_gb": round(max(first["peak_rss_gb"], second["peak_rss_gb"]), 2)}
        print(f"  {cache} page cache: read once {row['read_once_s'][0]} s and {row['read_once_s'][1]} s (before and "
              f"after the import); import {row['import_s']} s = {row['import_over_read']}x the mean read (goal <= 2x), "
              f"{size:.2f} GB of shards; import peak memory {row['import_peak_rss_gb']} GB RSS, "
              f"{row['import_peak_pss_gb']} GB PSS (goal <= 2 GB); the read's, through one map of each file: "
              f"{row['read_once_peak_rss_gb']} GB RSS", flush=True)
        print(json.dumps(result | row))
        rows.append(result | row)
    save_results("bench_import", rows)


if __name__ == "__main__":
    main()
