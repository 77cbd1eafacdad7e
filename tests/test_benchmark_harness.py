"""benchmarks/harness.py, the one harness of every benchmark: measuring a command's process tree and
work in this process, the results file, and that every benchmark uses it (a package run as
modules: no ``sys.path`` edits)."""

import ast
import importlib
import json
import sys

import numpy as np
import pytest
from conftest import ROOT

from benchmarks import harness

BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.stem not in ("__init__", "harness"))


@pytest.mark.slow
def test_run_measured_reports_the_peak_memory_of_a_child_that_allocates_200_mb():
    allocate = "import time; block = b'x' * (200 * 2**20); time.sleep(1.5)"
    figures = harness.run_measured([sys.executable, "-c", allocate])
    assert 200 / 1024 <= figures["peak_rss_gb"] < 1.0
    assert 190 / 1024 <= figures["peak_pss_gb"] <= figures["peak_rss_gb"]
    assert figures["wall_s"] >= 1.5 and figures["cpu_s"] > 0
    with pytest.raises(RuntimeError, match="no such thing"):
        harness.run_measured([sys.executable, "-c", "raise SystemExit('no such thing')"])


def _resident_gb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 2**20


def test_measured_reports_the_peak_of_work_in_this_process():
    before = _resident_gb()
    with harness.measured() as figures:
        block = np.ones(100 * 2**20 // 8)  # 100 MB, every page written
        del block
    assert figures["peak_rss_gb"] >= before + 0.09 and figures["wall_s"] > 0 and figures["cpu_s"] >= 0
    if figures["peak_reset"]:  # the peak counts from the block's start, not the process's
        assert figures["peak_rss_gb"] < before + 0.5
    assert harness.peak_rss_gb() >= figures["peak_rss_gb"] - 0.01


def test_save_results_writes_rows_machine_and_command_atomically(tmp_path, monkeypatch, capsys):
    rows = [{"n": np.int64(5), "seconds": np.float32(0.5), "members": np.arange(3)}, {"n": 6, "seconds": 1.0}]
    path = harness.save_results("toy", rows, path=tmp_path / "toy.json", command=["make", "bench-toy"], sizes={"a": 1})
    assert f"results written to {path}" in capsys.readouterr().out
    saved = json.loads(path.read_text())
    assert saved["benchmark"] == "toy" and saved["command"] == ["make", "bench-toy"] and saved["sizes"] == {"a": 1}
    assert saved["rows"] == [{"n": 5, "seconds": 0.5, "members": [0, 1, 2]}, {"n": 6, "seconds": 1.0}]
    machine = saved["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["python"] and machine["numpy"] == np.__version__
    assert {"gpu", "memory_gb", "torch", "lightgbm", "git_commit", "date", "threads"} <= set(machine)
    assert saved["date"] and [p.name for p in tmp_path.iterdir()] == ["toy.json"]  # no temporary file left

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(harness.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        harness.save_results("toy", [{"n": 7}], path=path)
    assert json.loads(path.read_text())["rows"][1] == {"n": 6, "seconds": 1.0}  # the previous file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["toy.json"]


def test_save_results_defaults_to_runs_benchmarks_and_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "benchmarks")
    path = harness.save_results("toy", [])
    assert path == tmp_path / "benchmarks" / "toy.json"
    assert json.loads(path.read_text())["command"] == sys.orig_argv


def test_pin_threads_sets_what_is_unset_and_keeps_a_chosen_value(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")
    with pytest.warns(RuntimeWarning) as caught:  # numpy is loaded here: too late for this process
        pinned = harness.pin_threads(("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    assert pinned == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "4"}
    assert any("OMP_NUM_THREADS" in str(w.message) and "numpy" in str(w.message) for w in caught)
    assert any("MKL_NUM_THREADS=4 kept" in str(w.message) for w in caught)


def test_the_pruning_oracle_loads_from_its_file():
    assert callable(harness.tests_module("prune_reference").greedy_keep_set)


@pytest.mark.parametrize("script", [p.name for p in BENCHMARKS])
def test_every_benchmark_uses_the_harness_and_imports_as_a_module(script):
    source = (ROOT / "benchmarks" / script).read_text()
    assert "sys.path" not in source, f"{script} edits sys.path: import benchmarks.NAME instead"
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    assert "benchmarks.harness" in imported, f"{script} does not use benchmarks/harness.py"
    assert "save_results" in source, f"{script} writes no results file"
    module = importlib.import_module(f"benchmarks.{script[:-3]}")
    assert callable(module.main)
