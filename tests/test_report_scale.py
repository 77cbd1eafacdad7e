"""The report, RunView, pruning and curation on a planted run without images, many targets.

A planted sweep (datamodels.planted) has no dataset: players are shown by index and class, and
the report must choose what to show, whatever the number of targets.
"""

import re

import nbformat
import numpy as np
import pandas as pd
import pytest

from nbclient import NotebookClient

from conftest import ROOT
from datamodels.analysis import (AnalysisError, RunView, class_pair_patterns, plot_interactions, plot_player,
                                 plot_target, residual_sd, strongest_targets, strongest_terms, term_counts,
                                 term_strength)
from datamodels.fitting import FitSettings, run_fit
from datamodels.planted import read_planted_truth, write_planted_sweep
from datamodels.pruning import PruneSettings, PruningError, run_curate, run_prune
from datamodels.report import run_report, write_report

N, T, MASKS, CLASSES = 2000, 300, 800, 10
LINEAR_FIT = 120   # targets the linear datamodel fits: more than anything the page may list
SPEX_FIT = 6       # targets ProxySPEX fits
# the game: a few mains, strong planted pairs and a triple, so a small sweep finds them
GAME = {"n_mains": 20, "n_synergy": 2, "n_redundancy": 2, "n_triples": 1, "strength": 1.0}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    """A planted sweep with classes, fitted (linear on LINEAR_FIT targets, ProxySPEX on SPEX_FIT)."""
    run_dir = tmp_path_factory.mktemp("planted") / "run"
    write_planted_sweep(run_dir, N, T, MASKS, models_per_shard=MASKS, seed=3, progress=False, classes=CLASSES,
                        **GAME)
    # the linear datamodel's cheapest honest settings: a small working set, 2 folds
    run_fit(run_dir, FitSettings(method="linear", params={"cv": 2, "screen_k": 40}, stop=LINEAR_FIT, workers=1),
            progress=False)
    run_fit(run_dir, FitSettings(method="proxyspex", params={"screen_k": 40}, stop=SPEX_FIT, workers=1),
            progress=False)
    return run_dir


def test_report_is_bounded_and_names_players_by_index_and_class(planted_run):
    page = run_report(planted_run)
    html = page.read_text()
    report = page.parent
    labels = np.load(planted_run / "planted" / "labels.npy")
    # every fitted target's faithfulness beside the page, not in it
    faithfulness = pd.read_csv(report / "faithfulness.csv")
    assert len(faithfulness) == LINEAR_FIT + SPEX_FIT
    assert set(faithfulness["method"]) == {"linear", "proxyspex"} and faithfulness["r2"].notna().all()
    assert 'href="faithfulness.csv"' in html
    # bounded: 1 faithfulness histogram + at most 2 figures for 2 targets of each of 3 kinds
    figures = re.findall(r'src="(figure-\d+\.png)"', html)
    assert 1 <= len(set(figures)) <= 1 + 2 * 2 * 3 == 13
    assert len(set(figures)) == len(list(report.glob("figure-*.png")))
    rows = html.count("<tr")
    assert rows < 100 < LINEAR_FIT  # not one row per target
    assert html.count("target 119") <= 1  # the last linear target is listed nowhere unless among the worst
    size = page.stat().st_size + sum(p.stat().st_size for p in report.glob("figure-*.png"))
    assert size < 1_500_000
    # no images: players by index and class, and the page says so
    assert "<img" in html and "No dataset is linked to this run: players are shown by index and class." in html
    view = RunView.open(planted_run)
    top = strongest_terms(view, 1)
    members = top["members"][0]
    for player in members:
        assert f"player {player} (class {labels[player]})" in html
    # the strongest interaction overall is a planted one, of the target the table names
    truth = read_planted_truth(planted_run)
    assert tuple(int(p) for p in members) in truth[int(top["target"][0])]
    # class pairs counted with the players' classes (no target classes without a dataset)
    patterns = class_pair_patterns(view, "synergy")
    assert "target_class" not in patterns and patterns["pairs"].sum() == (
        (view.interactions["method"] == "proxyspex") & (view.interactions["order"] == 2)
        & (view.interactions["kind"] == "synergy")).sum()
    assert "Pruning" in html and "No keep-sets yet" in html  # the report works without pruning results


def test_targets_are_ranked_by_their_strongest_term_over_the_residual_sd(planted_run):
    view = RunView.open(planted_run)
    metrics = view.fit_metrics[view.fit_metrics["method"] == "proxyspex"].set_index("target")
    tau = {t: np.sqrt(np.clip(1 - metrics.loc[t, "r2"], 0.05, 1)) * view.margins(t).std() for t in metrics.index}
    pd.testing.assert_series_equal(residual_sd(view, "proxyspex").sort_index(), pd.Series(tau).sort_index(),
                                   check_names=False, check_index_type=False, rtol=1e-6)
    rows = view.interactions[(view.interactions["method"] == "proxyspex") & (view.interactions["kind"] == "synergy")]
    best = {t: (group["mobius"].abs() / tau[t]).max() for t, group in rows.groupby("target")}
    assert strongest_targets(view, "synergy", 3) == sorted(best, key=best.get, reverse=True)[:3]
    strength = term_strength(view, "proxyspex", orders=(2, 3))
    top = strongest_terms(view, 5)
    np.testing.assert_allclose(top["strength"], np.sort(strength["strength"])[::-1][:5])
    counted = term_counts(view).set_index(["method", "order", "kind"])["terms"]
    expected = view.interactions.groupby(["method", "order", "kind"]).size()
    assert counted.to_dict() == expected.to_dict()
    one_each = strongest_terms(view, 4, per_target=1)  # the report's table: a few targets do not fill it
    best_per_target = strength.groupby("target")["strength"].max().nlargest(4)
    assert one_each["target"].tolist() == best_per_target.index.tolist()
    np.testing.assert_allclose(one_each["strength"], best_per_target)


def test_views_without_images_draw_bars_and_refuse_image_figures(planted_run):
    view = RunView.open(planted_run)
    assert not view.has_images and view.sweep_run is None and view.meta["dataset"] == "planted"
    assert view.player_name(7) == f"player 7 (class {np.load(planted_run / 'planted' / 'labels.npy')[7]})"
    target = strongest_targets(view, "synergy", 1)[0]
    assert plot_interactions(view, target, "synergy").axes[0].get_title().startswith("strongest synergy")
    assert len(plot_target(view, target).axes) == 1  # the margins only: there is no image
    with pytest.raises(AnalysisError, match="has no dataset linked"):
        plot_player(view, 7)


def test_prune_and_curate_on_a_run_without_images(planted_run, tmp_path):
    settings = PruneSettings(methods=["random", "stratified"], fractions=[0.5], draws=2)
    keep, _ = run_prune(planted_run, settings, progress=False)
    assert set(keep["method"]) == {"random", "stratified"} and (keep["size"] == N // 2).all()
    labels = np.load(planted_run / "planted" / "labels.npy")
    stratified = np.asarray(keep[keep["method"] == "stratified"]["players"].iloc[0])
    assert np.abs(np.bincount(labels[stratified], minlength=CLASSES) - np.bincount(labels) / 2).max() <= 1
    written = run_curate(planted_run, "stratified", 0.5, tmp_path / "curated")
    curated = pd.read_parquet(written[0])
    np.testing.assert_array_equal(curated["player"], stratified)
    np.testing.assert_array_equal(curated["dataset_index"], stratified)  # no dataset: the player's own index
    np.testing.assert_array_equal(curated["class"], labels[stratified])
    with pytest.raises(PruningError, match="has no dataset linked: leave it false"):
        run_curate(planted_run, "random", 0.5, tmp_path / "arrays", export_arrays=True)
    assert not (tmp_path / "arrays").exists()
    with pytest.raises(PruningError, match="trains models on the run's data, and this run has none linked"):
        run_prune(planted_run, PruneSettings(methods=["el2n"], fractions=[0.5]), progress=False)
    # the report lists the keep-sets it cannot judge without retraining
    html = write_report(RunView.open(planted_run), tmp_path / "page" / "index.html").read_text()
    assert "have not been retrained" in html and "stratified" in html


def test_a_run_without_classes_names_players_by_index(tmp_path):
    write_planted_sweep(tmp_path, 40, 3, 200, seed=1, progress=False, n_mains=5, n_synergy=1, n_redundancy=0,
                        n_triples=0)
    run_fit(tmp_path, FitSettings(method="proxyspex", params={}, workers=1), progress=False)
    view = RunView.open(tmp_path)
    assert view.player_labels is None and view.player_name(7) == "player 7"
    html = run_report(tmp_path).read_text()
    assert "players are shown by index." in html and "classes are unknown in this run" in html
    with pytest.raises(PruningError, match="stratified draws within classes"):
        run_prune(tmp_path, PruneSettings(methods=["stratified"], fractions=[0.5]), progress=False)
    with pytest.raises(AnalysisError, match="class pairs need the players' classes"):
        class_pair_patterns(view, "synergy")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "analysis").glob("*.ipynb")))
def test_notebooks_execute_on_a_run_without_images(planted_run, notebook, monkeypatch):
    monkeypatch.setenv("DATAMODELS_RUN", str(planted_run))
    book = nbformat.read(ROOT / "analysis" / notebook, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "analysis")}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/html", "")
                   for c in book.cells if c.cell_type == "code" for o in c.outputs)
    if notebook.startswith("01"):  # players by index and class in the effects tables
        assert re.search(r"player \d+ \(class \d\)", text)
    if notebook.startswith("03"):
        assert "the keep-sets have not been retrained" in text
