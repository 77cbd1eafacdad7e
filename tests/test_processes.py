"""Worker processes (datamodels/processes.py): a script's unguarded top level is refused before
any worker starts; workers of one parent get distinct progress lines."""

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from datamodels.processes import worker_slot

SCRIPT = """\
import numpy as np
from datamodels.fit.stage import fit_and_evaluate
rng = np.random.default_rng(0)
X = rng.random((200, 12)) < 0.5
Y = (X[:, :4] @ rng.normal(size=(4, 3)) + rng.normal(0, 0.1, (200, 3))).astype(np.float32)
_, metrics = fit_and_evaluate(X, Y, np.arange(200), "linear", workers=2, progress=False)
print("r2", metrics["r2"].min())
"""


def run_script(path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=120,
                          cwd=path.parent)


@pytest.mark.slow
def test_workers_started_from_an_unguarded_script_fail_at_once_and_say_why(tmp_path):
    unguarded = tmp_path / "curate.py"
    unguarded.write_text(SCRIPT)
    proc = run_script(unguarded)
    assert proc.returncode != 0 and "BrokenProcessPool" not in proc.stderr
    assert f're-import {unguarded}: its call at line 6 must be under `if __name__ == "__main__":`' in proc.stderr
    guarded = tmp_path / "guarded.py"
    guarded.write_text('if __name__ == "__main__":\n' + textwrap.indent(SCRIPT, "    "))
    proc = run_script(guarded)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split("r2")[1]) > 0.9


def _hold_slot(queue, release):
    queue.put(worker_slot())
    release.wait()


@pytest.mark.slow
def test_live_workers_of_one_parent_hold_distinct_slots():
    context = multiprocessing.get_context("spawn")
    queue, release = context.Queue(), context.Event()
    workers = [context.Process(target=_hold_slot, args=(queue, release)) for _ in range(3)]
    for w in workers:
        w.start()
    slots = sorted(queue.get(timeout=60) for _ in workers)
    release.set()
    for w in workers:
        w.join(timeout=60)
    assert slots == [0, 1, 2]
    # a dead worker's slot is free again
    late = context.Process(target=_hold_slot, args=(queue, release))
    late.start()
    assert queue.get(timeout=60) == 0
    late.join(timeout=60)
