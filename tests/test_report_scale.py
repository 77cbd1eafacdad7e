"""The report, RunView, pruning and curation on a planted run without images, many targets.

A planted sweep (datamodels.sweep.planted) has no dataset: players are shown by index and class, and
the report must choose what to show, whatever the number of targets.
"""

import re
import shutil

import nbformat
import numpy as np
import pandas as pd
import pytest

from nbclient import NotebookClient

from conftest import ROOT
from datamodels.views.analysis import (AnalysisError, RunView, class_pair_patterns, plot_interactions, plot_player,
                                 plot_target, pruning_conclusion, pruning_paired, residual_sd, strongest_pair,
                                 strongest_targets, strongest_terms, term_counts, term_strength, top_effects)
from datamodels.fit.outputs import summary
from datamodels.fit.stage import FitSettings, run_fit
from datamodels.sweep.planted import read_planted_truth, write_planted_sweep
from datamodels.pruning import CurateSettings, PruneSettings, PruningError, run_curate, run_prune
from datamodels.views.report import run_report, write_report
from datamodels.run.folder import RunFolder

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
    run_fit(run_dir, FitSettings(engine="linear", params={"cv": 2, "screen_k": 40}, stop=LINEAR_FIT, workers=1),
            progress=False)
    run_fit(run_dir, FitSettings(engine="proxyspex", params={"screen_k": 40}, stop=SPEX_FIT, workers=1),
            progress=False)
    return run_dir


def test_report_is_bounded_and_names_players_by_index_and_class(planted_run):
    page = run_report(planted_run).written[0]
    html = page.read_text()
    report = page.parent
    labels = np.load(planted_run / "planted" / "labels.npy")
    # every fitted target's faithfulness beside the page, not in it
    faithfulness = pd.read_csv(report / "faithfulness.csv")
    assert len(faithfulness) == LINEAR_FIT + SPEX_FIT
    assert set(faithfulness["engine"]) == {"linear", "proxyspex"} and faithfulness["r2"].notna().all()
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
        (view.interactions["engine"] == "proxyspex") & (view.interactions["order"] == 2)
        & (view.interactions["kind"] == "synergy")).sum()
    assert "Pruning" in html and "No keep-sets yet" in html  # the report works without pruning results


def test_targets_are_ranked_by_their_strongest_term_over_the_residual_sd(planted_run):
    view = RunView.open(planted_run)
    metrics = view.fit_metrics[view.fit_metrics["engine"] == "proxyspex"].set_index("target")
    tau = {t: np.sqrt(np.clip(1 - metrics.loc[t, "r2"], 0.05, 1)) * view.margins(t).std() for t in metrics.index}
    pd.testing.assert_series_equal(residual_sd(view, "proxyspex").sort_index(), pd.Series(tau).sort_index(),
                                   check_names=False, check_index_type=False, rtol=1e-6)
    rows = view.interactions[(view.interactions["engine"] == "proxyspex") & (view.interactions["kind"] == "synergy")]
    best = {t: (group["mobius"].abs() / tau[t]).max() for t, group in rows.groupby("target")}
    assert strongest_targets(view, "synergy", 3) == sorted(best, key=best.get, reverse=True)[:3]
    strength = term_strength(view, "proxyspex", orders=(2, 3))
    top = strongest_terms(view, 5)
    np.testing.assert_allclose(top["strength"], np.sort(strength["strength"])[::-1][:5])
    counted = term_counts(view).set_index(["engine", "order", "kind"])["terms"]
    expected = view.interactions.groupby(["engine", "order", "kind"]).size()
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
    keep = run_prune(planted_run, settings, progress=False).outputs["keep_sets"]
    assert set(keep["method"]) == {"random", "stratified"} and (keep["size"] == N // 2).all()
    labels = np.load(planted_run / "planted" / "labels.npy")
    stratified = np.asarray(keep[keep["method"] == "stratified"]["players"].iloc[0])
    assert np.abs(np.bincount(labels[stratified], minlength=CLASSES) - np.bincount(labels) / 2).max() <= 1
    written = run_curate(planted_run, CurateSettings("stratified", 0.5, str(tmp_path / "curated"))).written
    curated = pd.read_parquet(written[0])
    np.testing.assert_array_equal(curated["player"], stratified)
    np.testing.assert_array_equal(curated["dataset_index"], stratified)  # no dataset: the player's own index
    np.testing.assert_array_equal(curated["class"], labels[stratified])
    with pytest.raises(PruningError, match="has no dataset linked: leave it false"):
        run_curate(planted_run, CurateSettings("random", 0.5, str(tmp_path / "arrays"), export_arrays=True))
    assert not (tmp_path / "arrays").exists()
    with pytest.raises(PruningError, match="trains models on the run's data, and this run has none linked"):
        run_prune(planted_run, PruneSettings(methods=["el2n"], fractions=[0.5]), progress=False)
    # the report lists the keep-sets it cannot judge without retraining
    html = write_report(RunView.open(planted_run), tmp_path / "page" / "index.html").read_text()
    assert "have not been retrained" in html and "stratified" in html


def test_a_run_without_classes_names_players_by_index(tmp_path):
    write_planted_sweep(tmp_path, 40, 3, 200, seed=1, progress=False, n_mains=5, n_synergy=1, n_redundancy=0,
                        n_triples=0)
    run_fit(tmp_path, FitSettings(engine="proxyspex", params={}, workers=1), progress=False)
    view = RunView.open(tmp_path)
    assert view.player_labels is None and view.player_name(7) == "player 7"
    html = run_report(tmp_path).written[0].read_text()
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


# --------------------------------------------------------------------------- the page explains itself

HREF = re.compile(r'(?:href|src)="([^"]+)"')
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def local_links(folder):
    """(file, target) for every relative href/src of the folder's HTML and link of its Markdown."""
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".html", ".md"):
            continue
        text = path.read_text()
        for target in HREF.findall(text) + (MD_LINK.findall(text) if path.suffix == ".md" else []):
            target = target.split("#")[0]
            if target and not re.match(r"[a-z]+:", target):
                yield path, target


def sections(html):
    """The page's h2 sections (title, html up to the next h2), the reading guide left out."""
    parts = re.split(r"<h2>(.*?)</h2>", html.removesuffix("</body></html>"))
    return [(title, chunk) for title, chunk in zip(parts[1::2], parts[2::2]) if title != "How to read this report"]


def check_page(page):
    """What every report must satisfy: links resolve, every table column is explained, every
    section ends with a conclusion. Returns the conclusions by section title."""
    folder = page.parent
    broken = [(str(p.relative_to(folder)), t) for p, t in local_links(folder) if not (p.parent / t).exists()]
    assert not broken, broken
    html = page.read_text()
    assert "<td>NaN</td>" not in html and "no description" not in html
    for table, legend in re.findall(r'(<table.*?</table>)\s*<p class="legend">(.*?)</p>', html, re.S):
        explained = {name for names in re.findall(r"<b>(.*?)</b>", legend) for name in names.split(", ")}
        headers = re.findall(r"<th>(.*?)</th>", table)
        assert headers and set(headers) <= explained, (headers, legend)
        if "<td>n/a</td>" in table:
            assert "(n/a: " in legend
    assert html.count("<table") == len(re.findall(r'</table>\s*<p class="legend">', html))  # no table without
    found = {}
    for title, chunk in sections(html):
        ending = re.search(r'<p class="conclusion"><b>Conclusion:</b> ([^<]*)</p>\s*$', chunk)
        assert ending, f"section {title!r} does not end with a conclusion"
        found[title] = ending[1]
    return found


def test_report_explains_its_tables_resolves_its_links_and_concludes(planted_run, tmp_path):
    view = RunView.open(planted_run)
    page = write_report(view, tmp_path / "report" / "index.html")
    found = check_page(page)
    assert {"Faithfulness on held-out models", "Targets with the strongest synergy", "Pruning"} <= set(found)
    assert (tmp_path / "report" / "docs" / "benchmarks.md").exists()  # linked from the docs the page cites
    # noise ceiling: this sweep has no repeats, so the column is left out and the page says why
    assert "noise_ceiling</b> is left out: the noise ceiling needs repeated masks, sweep.repeats&gt;=2" in page.read_text()
    # the synergy conclusion names the strongest synergy pair, a planted one, as the fit's console does
    truth = read_planted_truth(planted_run)
    top = strongest_pair(view, "synergy", "proxyspex")
    pair, target = tuple(int(p) for p in top["members"]), int(top["target"])
    assert pair in truth[target]
    assert f"players [{pair[0]}, {pair[1]}] on {view.target_name(target)}" in found["Targets with the strongest synergy"]
    metrics = view.fit_metrics[view.fit_metrics["engine"] == "proxyspex"]
    fitted = view.interactions[view.interactions["engine"] == "proxyspex"]
    console = summary(fitted, metrics, view.margin_sd)
    assert f"strongest synergy: players {list(pair)} on target {target} " in console
    red = strongest_pair(view, "redundancy", "proxyspex")
    assert (f"strongest redundancy: players {[int(p) for p in red['members']]} on target {int(red['target'])} "
            if red is not None else "no redundancy pairs found") in console
    # (an earlier test of this module may have written keep-sets; none is retrained: no dataset)
    assert found["Pruning"].startswith("no keep-sets yet" if not view.folder.keep_sets_file.exists() else
                                       f"keep-sets of {view.keep_sets['method'].nunique()} methods")
    lines = (tmp_path / "report" / "conclusions.txt").read_text().splitlines()
    assert len(lines) == len(found) and any(line.startswith("synergy: the strongest synergy pair") for line in lines)


INTERACTION_SECTIONS = {"The strongest interactions over all targets", "Targets with the strongest main effects",
                        "Targets with the strongest synergy", "Targets with the strongest redundancy",
                        "Which classes pair up"}


def test_a_missing_table_empties_only_its_sections_and_names_the_job_that_writes_it(planted_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(planted_run, run, ignore=shutil.ignore_patterns("report"))
    folder = RunFolder(run)
    if not folder.keep_sets_file.exists():  # (an earlier test of this module may have written them)
        run_prune(run, PruneSettings(methods=["random"], fractions=[0.5], draws=1), progress=False)
    full = check_page(write_report(RunView.open(run), tmp_path / "full" / "index.html"))
    assert "Pruning" in full and not full["Pruning"].startswith("no keep-sets")
    for table, relative, job, emptied, what in (
            (folder.keep_sets_file, "prune/keep_sets.parquet", "prune.py", {"Pruning"}, "keep-sets"),
            (folder.interactions_file(), "fit/interactions.parquet", "fit.py", INTERACTION_SECTIONS, "fitted interactions")):
        table.rename(tmp_path / "aside")
        try:
            page = write_report(RunView.open(run), tmp_path / table.stem / "index.html")
            found = check_page(page)  # every section still there, and still ending with its conclusion
        finally:
            (tmp_path / "aside").rename(table)
        line = (f"No {what} yet: <code>{relative}</code> is missing; run <code>python jobs/{job} "
                f"run_dir={folder.root}</code>.")
        chunks = dict(sections(page.read_text()))
        assert len(found) == len(full) and emptied <= set(found), (sorted(found), sorted(full))
        for title, conclusion in found.items():
            if title in emptied:
                assert line in chunks[title], title
                assert conclusion == f"no {what} yet ({relative} is missing), so nothing to conclude."
            else:  # the sections that do not read the table are those of the complete run
                assert line not in chunks[title] and conclusion == full[title], title


def test_no_triple_shown_as_synergy_has_a_redundant_pair(tmp_path):
    """Planted: a synergy triple, and three duplicates (any one suffices: m = +s on each member,
    -s on each pair, +s on the triple). The fit labels both triples synergy by their sign; the
    views call only the first synergy, the duplicates' triple redundancy."""
    write_planted_sweep(tmp_path, 30, 2, 600, seed=2, progress=False, n_mains=3, n_synergy=0, n_redundancy=0,
                        n_triples=1, duplicates=[[0, 1, 2]], noise=0.1)
    run_fit(tmp_path, FitSettings(engine="proxyspex", params={}, workers=1), progress=False)
    view = RunView.open(tmp_path)
    strength = term_strength(view, "proxyspex")
    triples = strength[strength["order"] == 3]
    members = {i: tuple(int(p) for p in m) for i, m in zip(triples.index,
                                                           view.interactions.loc[triples.index, "members"])}
    truth = read_planted_truth(tmp_path)
    planted = {t: next(k for k in spectrum if len(k) == 3 and k != (0, 1, 2)) for t, spectrum in truth.items()}
    for row, triple in members.items():
        target = int(triples.loc[row, "target"])
        if triple == (0, 1, 2):  # the duplicates
            assert triples.loc[row, "kind"] == "redundancy"
        elif triple == planted[target]:
            assert triples.loc[row, "kind"] == "synergy"
    assert any(t == (0, 1, 2) for t in members.values()) and any(t in planted.values() for t in members.values())
    pairs = view.interactions[(view.interactions["engine"] == "proxyspex") & (view.interactions["order"] == 2)]
    redundant = {(int(t), tuple(int(p) for p in m)) for t, m, k in zip(pairs["target"], pairs["members"], pairs["kind"])
                 if k == "redundancy"}
    for target in view.fit_metrics["target"]:  # what the synergy figures and the terms table show
        shown = top_effects(view, int(target), kind="synergy", k=50)
        for triple in shown.loc[shown["order"] == 3, "members"]:
            a, b, c = sorted(int(p) for p in triple)
            assert not {(int(target), p) for p in ((a, b), (a, c), (b, c))} & redundant, (target, triple)
    assert (strongest_terms(view, 50).query("kind == 'synergy' and order == 3")["members"]
            .map(lambda m: tuple(sorted(int(p) for p in m)) != (0, 1, 2)).all())
    check_page(write_report(view, tmp_path / "report" / "index.html"))


def test_pruning_conclusion_states_where_keep_sets_beat_the_best_baseline(tmp_path):
    """A pruning evaluation whose answer is known: interactions beat the best baseline at 0.3 kept
    by +0.02 (every seed), and tie at 0.5 and 0.9."""
    rng = np.random.default_rng(0)
    rows = []
    for fraction, gain in ((0.9, 0.0), (0.5, 0.0), (0.3, 0.02)):
        for seed in range(6):
            base = 0.9 - (1 - fraction) * 0.1 + rng.normal(0, 0.01)
            jitter = rng.normal(0, 0.004) if gain else rng.choice([-0.01, 0.01]) * (1 if seed % 2 else -1)
            rows += [("random", fraction, seed, base - 0.01), ("linear", fraction, seed, base),
                     ("interactions", fraction, seed, base + gain + jitter)]
    evaluation = pd.DataFrame(rows, columns=["method", "fraction", "seed", "holdout_acc"])
    view = RunView(tmp_path)
    view.__dict__["pruning"] = evaluation  # the evaluation stage's table, as RunView reads it
    sentence = pruning_conclusion(view)
    assert re.fullmatch(r"interactions keep-sets beat the best baseline at 0\.3 kept \(\+0\.02\d \[\+0\.0\d\d, "
                        r"\+0\.0\d\d\] vs linear\) and tie elsewhere", sentence), sentence
    flat = evaluation.assign(holdout_acc=np.where(evaluation["method"] == "interactions",
                                                  evaluation["holdout_acc"] - 0.04, evaluation["holdout_acc"]))
    view.__dict__["pruning"] = flat
    assert pruning_conclusion(view).startswith("interactions keep-sets lose to the best baseline at 0.9 kept")
    grid = pruning_paired(view)
    assert grid.loc["linear"].eq("best baseline").all() and not grid.isna().any().any()
