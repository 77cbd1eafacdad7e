"""Every stage tells what one call did the same way (datamodels.run.stage_result)."""

import pytest
from test_fit_job import write_sweep

from datamodels.fit.stage import FitSettings, run_fit
from datamodels.pruning import PruneSettings, run_prune
from datamodels.run import StageResult
from datamodels.run.folder import RunFolder


def test_a_stage_says_what_it_wrote_and_a_second_call_finds_it_up_to_date(tmp_path):
    write_sweep(tmp_path)
    folder = RunFolder(tmp_path)
    fit = FitSettings("linear", targets=[0, 2], workers=1)
    first = run_fit(tmp_path, fit, progress=False)
    assert (first.stage, first.up_to_date, first.pending) == ("fit", False, False)
    assert first.written == folder.fit_tables() and all(path.exists() for path in first.written)
    assert list(first.outputs["metrics"]["target"]) == [0, 2]
    assert set(first.outputs["interactions"]["target"]) == {0, 2}
    again = run_fit(tmp_path, fit, progress=False)
    assert again == StageResult("fit", up_to_date=True) and again.written == () and not again.outputs
    forced = run_fit(tmp_path, fit, progress=False, force=True)
    assert not forced.up_to_date and forced.written == first.written

    prune = PruneSettings(methods=["random"], fractions=[0.5], draws=1)
    first = run_prune(tmp_path, prune, progress=False)
    assert first.stage == "prune" and not first.up_to_date and first.written == (folder.keep_sets_file,)
    assert list(first.outputs["keep_sets"]["method"]) == ["random"]
    assert run_prune(tmp_path, prune, progress=False) == StageResult("prune", up_to_date=True)


def test_a_result_is_frozen_and_holds_its_files_as_a_tuple_of_paths(tmp_path):
    result = StageResult("curate", [str(tmp_path / "keep_set.parquet")])
    assert result.written == (tmp_path / "keep_set.parquet",)
    with pytest.raises(AttributeError):
        result.up_to_date = True
