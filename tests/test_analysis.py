"""The analysis stage end to end on a small real run: notebooks, the HTML report, pruning jobs."""

import json
import re
import shutil
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from conftest import ROOT, run_job
from datamodels.views.analysis import AnalysisError, RunView, pruning_paired, top_effects

SMALL = ["dataset.train=120", "dataset.target=12", "dataset.holdout=300", "sweep.num_models=160",
         "sweep.models_per_shard=80", "train.epochs=4", "model.width=8", "progress=false"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """sweep -> fit (ProxySPEX and linear) -> prune -> evaluate, as a user runs them."""
    run_dir = tmp_path_factory.mktemp("pipeline") / "run"
    args = [*SMALL, f"run_dir={run_dir}"]
    run_job("sweep.py", "-m", "sweep.shard=0,1", "hydra/launcher=joblib", *args)
    run_job("fit.py", *args)
    run_job("fit.py", "fit=linear", *args)
    run_job("prune.py", *args, "prune.el2n_seeds=2", "prune.fractions=[1.0,0.5,0.25]", "prune.eval_seeds=2")
    run_job("evaluate_pruning.py", *args, "prune.eval_seeds=2")
    # the free retraining check (no training): two pairs on the fit's held-out models
    run_job("ablate.py", *args, "ablate=heldout", "ablate.pairs=[[0,0,1],[1,2,3]]")
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "analysis").glob("*.ipynb")))
def test_notebooks_execute_on_a_real_run(pipeline, notebook, monkeypatch):
    monkeypatch.setenv("DATAMODELS_RUN", str(pipeline))
    book = nbformat.read(ROOT / "analysis" / notebook, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "analysis")}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the notebook drew no figure"


@pytest.mark.slow
def test_notebook_pointed_at_a_missing_run_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DATAMODELS_RUN", str(tmp_path / "nowhere"))
    book = nbformat.read(ROOT / "analysis" / "01_target_interactions.ipynb", as_version=4)
    with pytest.raises(Exception, match=r"holds no sweep \(no run.json\)"):
        NotebookClient(book, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "analysis")}}).execute()


@pytest.mark.slow
def test_pruning_outputs_cover_every_method_and_fraction(pipeline):
    evaluation = pd.read_parquet(pipeline / "prune" / "evaluation.parquet")
    assert set(evaluation["method"]) == {"interactions", "linear", "el2n", "ccs", "random", "stratified"}
    assert set(evaluation["fraction"]) == {1.0, 0.5, 0.25}
    assert (evaluation.groupby(["method", "fraction"]).size() == 2).all()
    randomised = evaluation[evaluation["method"].isin(["ccs", "random", "stratified"])]
    assert (randomised["draw"] == randomised["seed"]).all()  # draw s is trained with seed s
    assert evaluation["steps"].nunique() == 1  # one fixed step budget for every keep-set
    full = evaluation[evaluation["fraction"] == 1.0].groupby("method")["holdout_acc"].apply(tuple)
    assert full.nunique() == 1  # at fraction 1 every method keeps everything: identical models
    assert (pipeline / "prune" / "evaluation.png").stat().st_size > 0
    paired = pd.read_csv(pipeline / "prune" / "paired.csv")
    assert set(paired["fraction"]) == {1.0, 0.5, 0.25} and paired["baseline"].isin(["linear", "el2n", "ccs", "random",
                                                                                      "stratified"]).all()


@pytest.mark.slow
def test_curate_writes_a_keep_set_with_provenance(pipeline, tmp_path):
    out = tmp_path / "curated"
    run_job("curate.py", *SMALL, f"run_dir={pipeline}", "curate.method=interactions", "curate.fraction=0.5",
            "curate.export_arrays=true", f"curate.out={out}")
    card = json.loads((out / "card.json").read_text())
    keep = pd.read_parquet(out / "keep_set.parquet")
    arrays = np.load(out / "dataset.npz")
    assert card["method"] == "interactions" and card["players_kept"] == 60 == len(keep)
    assert card["fingerprint"] == json.loads((pipeline / "run.json").read_text())["fingerprint"]
    assert arrays["images"].shape == (60, 8, 8, 1) and arrays["images"].dtype == np.uint8
    again = run_job("curate.py", *SMALL, f"run_dir={pipeline}", "curate.method=interactions", "curate.fraction=0.5",
                    f"curate.out={out}", check=False)
    assert again.returncode != 0 and "already holds a curated keep-set" in again.stderr


@pytest.mark.slow
def test_bad_pruning_input_is_refused(pipeline, tmp_path):
    bad = run_job("prune.py", *SMALL, f"run_dir={pipeline}", "prune.fractions=[0.5,1.5]", check=False)
    assert bad.returncode != 0 and "kept fractions must lie in (0, 1]" in bad.stderr
    # keep-sets made on other data (another split seed gives another fingerprint)
    other = tmp_path / "other"
    args = [*SMALL, "dataset.split_seed=1", "sweep.num_models=4", "sweep.models_per_shard=4", f"run_dir={other}"]
    run_job("sweep.py", *args)
    foreign = run_job("evaluate_pruning.py", *args, f"prune.keep_sets={pipeline}/prune/keep_sets.parquet", check=False)
    assert foreign.returncode != 0 and "was made for dataset fingerprint" in foreign.stderr
    # a fit output missing targets
    partial = tmp_path / "partial"
    shutil.copytree(pipeline, partial, ignore=shutil.ignore_patterns("logs"))
    metrics = pd.read_parquet(partial / "fit" / "fit_metrics.parquet")
    from datamodels.tables import read_frame, write_frame
    frame, meta = read_frame(partial / "fit" / "fit_metrics.parquet", "fit")
    write_frame(partial / "fit" / "fit_metrics.parquet", frame[frame["target"] != 3], meta)
    missing = run_job("prune.py", *SMALL, f"run_dir={partial}", "prune.methods=[interactions]", check=False)
    assert missing.returncode != 0 and "covers 11 of the 12 targets (e.g. [3] are missing)" in missing.stderr
    assert len(metrics) > 0


@pytest.mark.slow
def test_fit_and_report_redo_only_what_their_inputs_changed(pipeline, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pipeline, run, ignore=shutil.ignore_patterns("logs", "report"))
    first = run_job("report.py", f"run_dir={run}")  # the run folder alone says which sweep it is
    assert "report: " in first.stdout and "skipped" not in first.stdout
    assert "skipped" in run_job("report.py", f"run_dir={run}").stdout
    assert "skipped" in run_job("fit.py", "fit=linear", f"run_dir={run}").stdout
    refit = run_job("fit.py", "fit=linear", "fit.split_seed=1", f"run_dir={run}").stdout  # another setting
    assert "skipped" not in refit and "wrote" in refit
    assert "skipped" not in run_job("report.py", f"run_dir={run}").stdout  # its fit tables changed
    assert "skipped" not in run_job("report.py", f"run_dir={run}", "force=true").stdout


@pytest.mark.slow
def test_readme_python_runs_as_printed(pipeline, capsys):
    """Every Python block of the README, in order, on a run laid out as make demo's (its path swapped)."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace('"runs/demo', f'"{pipeline}'), "README.md", "exec"), namespace)
    assert "members" in capsys.readouterr().out  # the interactions table was printed


@pytest.mark.slow
def test_views_refuse_unknown_targets_and_kinds(pipeline):
    view = RunView.open(pipeline)
    with pytest.raises(AnalysisError, match="target 99 has no proxyspex fit"):
        top_effects(view, 99)
    with pytest.raises(AnalysisError, match="kind must be one of"):
        top_effects(view, 0, kind="friendship")
    for method, row in pruning_paired(view).iterrows():  # no method is compared with itself
        assert not any(str(cell).endswith(f"vs {method}") for cell in row.dropna()), method


@pytest.mark.slow
def test_the_old_name_of_the_fitted_interactions_table_still_reads_them_with_a_warning(pipeline):
    view = RunView.open(pipeline)
    with pytest.warns(DeprecationWarning, match="interactions_arrow"):
        old = view.interaction_table
    assert old is view.interactions_arrow
    assert len(view.interactions) == old.num_rows


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(pipeline, tmp_path):
    run_job("report.py", *SMALL, f"run_dir={pipeline}")
    page = pipeline / "report" / "index.html"
    html = page.read_text()
    assert "Faithfulness on held-out models" in html and "Pruning" in html and ".png" in html
    # the terms explained beside the figures, main effects shown, the docs linked
    assert "How to read this report" in html and "<b>Synergy</b>" in html and "<b>Redundancy</b>" in html
    assert "Targets with the strongest main effects" in html and "its strongest main effects" in html
    assert "docs/pruning.md</a>" in html and 'href="docs/pruning.md"' in html  # relative: the folder can move
    assert (pipeline / "report" / "docs" / "pruning.md").exists() and "file://" not in html
    figures = re.findall(r'src="(figure-\d+\.png)"', html)
    assert len(set(figures)) == len(list((pipeline / "report").glob("figure-*.png")))  # no figure drawn twice
    assert "target_class" in html and "class_a, class_b" in html  # the class-pairs tables say what they hold
    assert "Checked by retraining" in html and "docs/ablation.md</a>" in html  # the held-out pair check
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    import matplotlib.image

    def screenshot(url: str, name: str) -> np.ndarray:
        shot = tmp_path / f"{name}.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,3000",
                        f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
        return matplotlib.image.imread(shot)[..., :3]

    pixels = screenshot(page.as_uri(), "report")
    assert pixels.shape[:2] == (3000, 1000)  # the legends and guide come first: figures lie below 1,400
    assert pixels.std() > 0.05, "the screenshot is blank"
    # The same page away from its PNGs shows broken images: the figures loaded where the two differ.
    detached = tmp_path / "detached.html"
    detached.write_text(html)
    broken = screenshot(detached.as_uri(), "detached")
    assert (np.abs(pixels - broken).max(axis=-1) > 0.1).mean() > 0.05, "the report's figures did not render"


def test_every_figures_block_of_the_docs_is_one_the_demo_check_writes():
    from benchmarks.demo_figures import BLOCKS, PAGES, page_blocks

    named = {name for page in PAGES for name in page_blocks(page.read_text())}
    assert named == set(BLOCKS)  # a block the check does not know, or one no page holds, would go unchecked


@pytest.mark.slow
def test_demo_figures_check_fails_when_a_page_drifts_from_the_run(pipeline, tmp_path, capsys):
    """make docs-check's comparison, on a real run: written blocks pass; one changed figure fails with a diff."""
    from benchmarks.demo_figures import BLOCKS, main

    page = tmp_path / "page.md"
    page.write_text("".join(f"prose\n<!-- figures:{name} -->\nSTALE\n<!-- /figures -->\n" for name in BLOCKS))
    assert main(["--run", str(pipeline), "--pages", str(page), "--check"]) == 1
    assert main(["--run", str(pipeline), "--pages", str(page), "--write"]) == 0
    written = page.read_text()
    assert "STALE" not in written and written.count("prose") == len(BLOCKS)
    accuracy = re.search(r"holdout accuracy of the sweep's models: mean (\d\.\d{3})", written)[1]
    expected = pd.read_parquet(pipeline / "shards", columns=["holdout_acc"])["holdout_acc"].mean()
    assert accuracy == f"{expected:.3f}"
    assert main(["--run", str(pipeline), "--pages", str(page), "--check"]) == 0
    page.write_text(written.replace(f"mean {accuracy}", "mean 0.123"))
    capsys.readouterr()
    assert main(["--run", str(pipeline), "--pages", str(page), "--check"]) == 1
    out = capsys.readouterr()
    assert "-160 models; holdout accuracy of the sweep's models: mean 0.123" in out.out
    assert "are not what" in out.err


def _opening(notebook: str) -> str:
    """A notebook's code up to the line that opens the run (its first code cell's start)."""
    book = nbformat.read(ROOT / "analysis" / notebook, as_version=4)
    source = next(c.source for c in book.cells if c.cell_type == "code")
    lines = source.splitlines()
    return "\n".join(lines[:next(i for i, line in enumerate(lines) if "RunView.open" in line) + 1])


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "analysis").glob("*.ipynb")))
def test_notebooks_open_a_relative_datamodels_run_from_the_root_as_jupyter_runs_them(tmp_path, notebook):
    """Jupyter runs a notebook in analysis/: DATAMODELS_RUN relative to the repository's root
    (where the user typed it) opens that run there."""
    import os
    import sys

    from datamodels.sweep.planted import write_planted_sweep

    run_dir = tmp_path / "run"
    write_planted_sweep(run_dir, 12, 2, 40, seed=0, progress=False, n_mains=3, n_synergy=1, n_redundancy=0,
                        n_triples=0)
    relative = os.path.relpath(run_dir, ROOT)  # from analysis/ the same words point one folder off
    assert not (ROOT / "analysis" / relative).exists()
    code = _opening(notebook) + "\nprint(view.run_dir)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "analysis", capture_output=True, text=True,
                          env=dict(os.environ, DATAMODELS_RUN=relative))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(run_dir.resolve())


def test_a_relative_datamodels_run_is_taken_from_the_cwd_first_and_its_absence_names_both_places(
        tmp_path, monkeypatch):
    from datamodels.views.run_view import _repository_root, run_dir_from_environment

    assert _repository_root() == ROOT
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATAMODELS_RUN", "runs/mine")
    assert run_dir_from_environment() == tmp_path.resolve() / "runs" / "mine"  # the cwd's, not the root's
    monkeypatch.setenv("DATAMODELS_RUN", str(tmp_path / "elsewhere"))
    assert run_dir_from_environment() == tmp_path / "elsewhere"  # absolute: as given (RunView.open says if empty)
    monkeypatch.setenv("DATAMODELS_RUN", "runs/nowhere")
    with pytest.raises(AnalysisError) as err:
        run_dir_from_environment()
    assert str(err.value) == (f"DATAMODELS_RUN=runs/nowhere: no such folder in the current directory "
                              f"({tmp_path / 'runs/nowhere'}) nor in the repository's root ({ROOT / 'runs/nowhere'}); "
                              f"set DATAMODELS_RUN to a run folder (absolute, or relative to either)")
