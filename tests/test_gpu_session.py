"""benchmarks/gpu_session.py, the one call a lent GPU machine gets for issue 20: every section
runs and writes its table, here on the CPU at toy sizes, so that a GPU's few minutes are not
spent on a script that breaks."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_session  # noqa: E402


@pytest.mark.slow
def test_every_section_runs_and_is_written(tmp_path):
    out = tmp_path / "gpu_session.md"
    gpu_session.main(["--device", "cpu", "--tiny", "--budget", "600", "--out", str(out)])
    text = out.read_text()
    assert "failed" not in text and "skipped" not in text, text
    for heading in ("## throughput", "small CNN, digits", "## store", "## equality", "## profile", "## levers",
                    "## processes"):
        assert heading in text
    assert "16 of 16 present, 0 missing; margins finite: True" in text
    results = json.loads(text.split("```json\n")[1].split("\n```")[0])
    assert {(r["network"], r["precision"], r["K"]) for r in results["throughput"]} == {
        (net, p, k) for net in gpu_session.NETS for p, k in [("bf16", 1), ("bf16", 4), ("fp32", 1)]}
    assert {(r["network"], r["compile"], r["K"]) for r in results["levers"]} == {
        (net, mode, k) for net, ks in [("airbench-size ResNet-9", (1, 2)), ("small CNN, digits", (1, 4))]
        for k in ks for mode in gpu_session.COMPILE_MODES}
    assert [(r["P"], r["K"]) for r in results["processes"]] == [(1, 1), (2, 1)]
    assert all(r["s_per_model"] > 0 for r in results["throughput"] + results["digits"] + results["levers"]
               + results["processes"])


@pytest.mark.slow
def test_a_spent_budget_skips_the_rest_and_keeps_what_was_written(tmp_path):
    out = tmp_path / "gpu_session.md"
    gpu_session.main(["--device", "cpu", "--tiny", "--budget", "0", "--sections", "store,profile", "--out", str(out)])
    text = out.read_text()
    assert "## store: skipped (time budget spent)" in text and "## profile: skipped" in text
