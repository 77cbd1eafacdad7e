"""What the run's report says (``jobs/report.py``): one function per section, each with its
conclusion, and :func:`run_report`, the stage that writes it to ``<run_dir>/report/``.

For users without a notebook server: the notebooks' views (:mod:`datamodels.views.analysis`) of the
fits and of the pruning, with a reading guide. A section whose stage has not run yet names the
missing file and the job that writes it instead of failing, and the others are written all the
same. How the page is written (HTML, figures, tables, the docs it cites copied beside it) is
:mod:`datamodels.views.report_page`. :func:`run_report` is skipped when the files it reads are
those of its last run.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import pandas as pd

from ..ablation.figures import plot_pairs, plot_removals
from ..errors import StoreError
from ..fit.results import default_engine
from ..pruning import plot_pruning
from ..pruning.duplicates import named_candidates, read_candidates
from ..run.folder import RunFolder
from ..run.stage_inputs import StageInputs
from ..run.stage_result import StageResult
from ..store.shards import shard_files
from ..sweep.run_data import AnalysisError
from .comparisons import (check_conclusion, faithfulness_conclusion, faithfulness_summary, pruning_conclusion,
                          pruning_grid, pruning_paired, pruning_table, worst_fitted_targets)
from .figures import plot_candidates, plot_faithfulness, plot_interactions, plot_player, plot_target
from .report_page import CONCLUSIONS, Page, docs_link, conclusions  # conclusions: jobs/report.py imports it here
from .report_text import (ABLATION_TEXT, CLASS_PAIRS_TEXT, DUPLICATES_TEXT, KIND_BARS_TEXT, KIND_SHOWN, KIND_TEXT,
                           KIND_TITLE, READING_GUIDE, STRENGTH_TEXT, TERMS_PER_TARGET)
from .run_view import RunView
from .terms import (KINDS, class_pair_patterns, kind_conclusion, strongest_targets, strongest_terms, term_strength,
                    top_effects)


def _keep_set_sizes(view: RunView) -> pd.DataFrame:
    """Methods x kept fractions: players kept (the first draw), for a run whose keep-sets were not retrained."""
    first = view.keep_sets[view.keep_sets["draw"] == 0]
    grid = first.pivot(index="method", columns="fraction", values="size")
    return grid[sorted(grid.columns, reverse=True)].rename_axis(columns=None)


# The inputs the sections read, by name: (the file or folder in the run, what it holds, the job that writes it).
def _inputs(view: RunView) -> dict[str, tuple[Path, str, str]]:
    run = view.folder.root
    fit = f"python jobs/fit.py run_dir={run}"  # ProxySPEX, the fit the sections rank terms of
    return {"fit_metrics": (view.folder.fit_metrics_file(), "fit metrics", fit),
            "interactions": (view.folder.interactions_file(), "fitted interactions", fit),
            "models": (view.folder.fit_ready, "collected models", f"python jobs/collect.py run_dir={run}"),
            "keep_sets": (view.folder.keep_sets_file, "keep-sets", f"python jobs/prune.py run_dir={run}"),
            "evaluation": (view.folder.evaluation, "pruning results", f"python jobs/evaluate_pruning.py run_dir={run}")}


# What the sections that rank a fit's terms read: the terms, their targets' R^2 and margins' sd.
RANKED_INPUTS = ("fit_metrics", "interactions", "models")


class _Page(Page):
    """The page of one run's report, which its sections add to, with the terms that several of
    them rank."""

    def __init__(self, view: RunView, page: Path):
        super().__init__(view, page, _inputs(view))
        self._ranked: tuple[str, pd.DataFrame] | None = None

    def ranked(self) -> tuple[str, pd.DataFrame]:
        """The fit whose terms the sections rank (:func:`~datamodels.fit.results.default_engine`) and
        every term's strength, computed once for all of them."""
        if self._ranked is None:
            engine = default_engine(self.view)
            self._ranked = engine, term_strength(self.view, engine)
        return self._ranked


def write_report(view: RunView, page: str | os.PathLike, targets_per_kind: int = 2, top_terms: int = 20,
                 worst_targets: int = 10, top_groups: int = 10) -> Path:
    """The page, its figures, the table of every target's faithfulness and the docs it cites, in
    the page's folder; returns the page.

    What it shows is bounded whatever the number of targets ``T`` and players ``n``: the
    ``targets_per_kind`` targets whose strongest main effect, synergy and redundancy are largest
    relative to the target's residual sd (:func:`~datamodels.views.terms.term_strength`), each with
    two figures; the ``top_terms`` strongest pairs and triples over all targets (same criterion,
    at most ``TERMS_PER_TARGET`` of one target) and the ``worst_targets`` worst-fitted targets of
    each method, as tables; faithfulness as quantiles and one
    histogram, with every target's row in ``faithfulness.csv`` beside the page; the ``top_groups``
    best candidate duplicate groups where jobs/duplicates.py ranked them. Players are
    shown as images where the run has them, else by index and class (``player 123 (class 4)``).

    One function per section, each reading its own inputs: a section whose file is missing says
    which, and the job that writes it, and the other sections are written all the same. The
    duplicates and the retraining checks are optional stages (``make demo`` runs neither): their
    sections appear once they have run.
    """
    report = _Page(view, Path(page))
    _run_section(report)
    _faithfulness_section(report, worst_targets)
    _strongest_terms_section(report, top_terms)
    for kind in KINDS:
        _kind_section(report, kind, targets_per_kind)
    _classes_section(report)
    if view.folder.duplicate_candidates.exists():
        _duplicates_section(report, top_groups)
    if view.ablations():
        _retraining_checks(report)
    _pruning_section(report)
    return report.write()


def _run_section(report: _Page) -> None:
    """The page's title, what the run is, and the reading guide."""
    view, meta = report.view, report.view.meta
    report.add(f"<h1>datamodels report: {escape(view.run_dir.name)}</h1>")
    try:
        collected = f"{len(view.models.model_index)} of {meta['num_models']} models collected"
    except AnalysisError:
        collected = (f"{meta['num_models']} models planned, none collected into the fit-ready layout yet (run "
                     f"<code>{escape(report.inputs['models'][2])}</code>)")
    images = "" if view.has_images else (" No dataset is linked to this run: players are shown by index"
                                         + (" and class." if view.player_labels is not None else "."))
    model = f"model {escape(str(meta['model']))}, " if meta["model"] else ""
    report.add(f"<p>{escape(str(meta['dataset']))} (fingerprint {escape(str(meta['fingerprint']))}), "
               f"{meta['n']:,} players ({escape(str(meta['players']))}), {meta['T']:,} targets, {model}design "
               f"{meta['design']} alpha {meta['alpha']}, {collected}.{escape(images)}</p>")
    report.add(READING_GUIDE.format(docs=docs_link(report.out, "interactions.md"),
                                    pruning=docs_link(report.out, "pruning.md")))


def _faithfulness_section(report: _Page, worst_targets: int) -> None:
    """Held-out R^2 and Spearman of each fitted engine: quantiles, a histogram and the worst-fitted
    targets; every target's row in a CSV beside the page."""
    view = report.view
    report.add("<h2>Faithfulness on held-out models</h2>")
    if report.lacks("faithfulness", "fit_metrics"):
        return
    with report.reading("faithfulness"):
        metrics = view.fit_metrics
        # beside the page, wherever it is written, so that its relative link resolves
        metrics.sort_values(["engine", "target"]).to_csv(report.out / view.folder.report_faithfulness.name,
                                                         index=False)
        ceiling = ("" if metrics["noise_ceiling"].notna().any() else
                   f" (the noise ceiling is NaN throughout: {report.na_reasons['noise_ceiling']})")
        report.add(f"<p>Quantiles over the fitted targets of each engine. Every target's row "
                   f"({len(metrics):,} rows: held-out R^2, Spearman, noise ceiling{escape(ceiling)}, working set, "
                   f"fit time) is in "
                   f'<a href="{view.folder.report_faithfulness.name}">{view.folder.report_faithfulness.name}</a>.'
                   f'</p>')
        report.table(faithfulness_summary(view).round(4).reset_index(), "faithfulness")
        report.figure(("faithfulness",), lambda: plot_faithfulness(view), "held-out R^2 per target and engine")
        for fitted in sorted(metrics["engine"].unique()):
            report.add(f"<h3>The {worst_targets} worst-fitted targets of {fitted}</h3>")
            worst = worst_fitted_targets(view, worst_targets, fitted)
            report.table(worst.drop(columns=["target", "engine"]).rename(columns={"target_name": "target"}), "worst")
        report.conclude("faithfulness", faithfulness_conclusion(view))


def _strongest_terms_section(report: _Page, top_terms: int) -> None:
    """The ``top_terms`` strongest pairs and triples over all targets, as a table."""
    view, title = report.view, "The strongest interactions over all targets"
    if report.lacks("strongest interactions", *RANKED_INPUTS, title=title):
        return
    with report.reading("strongest interactions", title):
        engine, strength = report.ranked()
        report.add(f"<h2>{title} ({engine})</h2>")
        report.add(f"<p>{STRENGTH_TEXT}</p>")
        terms = strongest_terms(view, top_terms, engine, strength=strength, per_target=TERMS_PER_TARGET)
        if terms.empty:
            report.add(f"<p>No pairs or triples in the {engine} fit.</p>")
            report.conclude("strongest interactions", f"the {engine} fit has no pair or triple")
            return
        report.table(terms[["target_name", "players", "kind", "mobius", "strength"]].rename(
            columns={"target_name": "target", "mobius": "m", "strength": "|m| / residual sd"}), "terms")
        counts = terms["kind"].value_counts()
        top = terms.iloc[0]
        report.conclude("strongest interactions",
                        f"of the {len(terms)} strongest pairs and triples, "
                        + ", ".join(f"{counts.get(k, 0)} {'are' if counts.get(k, 0) != 1 else 'is'} {k}"
                                    for k in ("redundancy", "synergy", "mixed") if k != "mixed" or k in counts)
                        + f"; the strongest is {top['players']} on {top['target_name']} ({top['kind']}, m = "
                          f"{top['mobius']:+.3f}, {top['strength']:.2f} residual sd)")


def _kind_section(report: _Page, kind: str, targets_per_kind: int) -> None:
    """The ``targets_per_kind`` targets whose strongest term of ``kind`` is largest, two figures each."""
    view, section = report.view, KIND_TITLE[kind]
    report.add(f"<h2>Targets with the strongest {KIND_TITLE[kind]}</h2>")
    if report.lacks(section, *RANKED_INPUTS):
        return
    with report.reading(section):
        engine, strength = report.ranked()
        # synergy and redundancy: targets ranked by their strongest pair, the unit the rule is stated for
        ranked = strength if kind == "main" else strength[strength["order"] == 2]
        chosen = strongest_targets(view, kind, targets_per_kind, engine, ranked)
        text = KIND_TEXT[kind] if view.has_images else KIND_BARS_TEXT[kind]
        report.add(f"<p>{escape(text)}</p>" if chosen else f"<p>No {KIND_TITLE[kind]} found.</p>")
        shown = KIND_SHOWN[kind]
        for t in chosen:
            report.figure(("target", t), lambda: plot_target(view, t),
                          f"{view.target_name(t)}: {'image and ' if view.has_images else ''}margin distribution")
            report.figure(("effects", t, kind), lambda: plot_interactions(view, t, kind, engine=engine),
                          f"{view.target_name(t)}: its strongest {KIND_TITLE[kind]}{shown}")
        if chosen and view.has_images and (view.player_size > 1).any():
            members = top_effects(view, chosen[0], kind=kind, k=1, engine=engine)["members"][0]
            for player in members:
                report.figure(("player", int(player)), lambda: plot_player(view, int(player)),
                              f"every image of player #{player}, in target {chosen[0]}'s strongest "
                              f"{KIND_TITLE[kind]}")
        report.conclude(section, kind_conclusion(view, kind, engine, strength))


def _classes_section(report: _Page) -> None:
    """How often the fit's synergy and redundancy pairs join two players of given classes."""
    view = report.view
    report.add("<h2>Which classes pair up</h2>")
    with report.reading("classes"):
        if view.player_labels is None:
            report.add("<p class='missing'>The players' classes are unknown in this run (no dataset linked, no "
                       "labels file).</p>")
            report.conclude("classes", "without the players' classes no class pattern can be read from this run")
            return
        if report.lacks("classes", "fit_metrics", "interactions"):
            return
        engine = default_engine(view)
        target = "a target's class (target_class), " if view.has_images else ""
        report.add(f"<p>{CLASS_PAIRS_TEXT.format(target=target)}</p>")
        same = {}
        for kind in ("synergy", "redundancy"):
            report.add(f"<h3>{kind}</h3>")
            patterns = class_pair_patterns(view, kind, engine)
            if patterns.empty:
                report.add(f"<p>No {kind} pairs.</p>")
            else:
                report.table(patterns.head(10), "classes")
            same[kind] = (int(patterns.loc[patterns["class_a"] == patterns["class_b"], "pairs"].sum()),
                          int(patterns["pairs"].sum()))
        report.conclude("classes", "; ".join(
            f"{s} of {n} {kind} pairs ({s / n:.0%}) join two players of one class" if n else f"no {kind} pairs"
            for kind, (s, n) in same.items()))


def _duplicates_section(report: _Page, top_groups: int) -> None:
    """The ``top_groups`` best candidate duplicate groups of jobs/duplicates.py, with their images."""
    view = report.view
    report.add("<h2>Candidate duplicates</h2>")
    report.add(f"<p>{DUPLICATES_TEXT.format(path=report.relative(view.folder.duplicate_candidates))}</p>")
    with report.reading("duplicates"):
        named = named_candidates(view, top_groups)
        if named.empty:
            report.add("<p>No pair cancels significantly more than duplicates.min_fraction of its members' "
                       "effect.</p>")
            report.conclude("duplicates", "no candidate duplicate groups: no pair cancels significantly more than "
                                          "duplicates.min_fraction of its members' effect")
            return
        report.table(named, "duplicates")
        best = named.iloc[0]
        report.conclude("duplicates", f"{len(named)} candidate groups are listed; the best, {best['players']}, "
                                      f"cancels {best['score']:.2f} of its members' main effect on average")
        if view.has_images:
            report.figure(("duplicates",), lambda: plot_candidates(view, read_candidates(view.run_dir)),
                          "the best candidate groups, each member's (first) image side by side")


def _pruning_section(report: _Page) -> None:
    """The holdout accuracy of each method's keep-sets, or the keep-sets' sizes before they are retrained."""
    view = report.view
    report.add("<h2>Pruning</h2>")
    report.add(f"<p>Keep-sets of each method at each kept fraction, retrained and judged on the holdout "
               f"split only (never on the targets). The methods and how to read the results: "
               f"{docs_link(report.out, 'pruning.md')}.</p>")
    if report.lacks("pruning", "keep_sets"):
        return
    with report.reading("pruning"):
        if not view.folder.evaluation.exists():
            path, _, command = report.inputs["evaluation"]
            report.add(f"<p>The keep-sets have not been retrained: <code>{escape(report.relative(path))}</code> is "
                       f"missing; run <code>{escape(command)}</code> (it needs the run's dataset). Players kept by "
                       f"each method at each fraction:</p>")
            report.table(_keep_set_sizes(view).reset_index(), "keep-sets")
            keep = view.keep_sets
            report.conclude("pruning", f"keep-sets of {keep['method'].nunique()} methods at "
                                       f"{keep['fraction'].nunique()} kept fractions are written but not retrained: "
                                       f"no holdout accuracy to compare yet")
            return
        report.add("<p>Holdout accuracy of models retrained on each keep-set under the full set's step budget: "
                   "mean and 95% interval over the seeds (the randomised methods: one draw per seed).</p>")
        report.table(pruning_grid(view).reset_index(), "pruning")
        report.add("<p>Each method minus the best baseline at that fraction, paired by seed (an interval "
                   "above 0: better than every baseline).</p>")
        report.table(pruning_paired(view).reset_index(), "pruning paired")
        report.figure(("pruning",), lambda: plot_pruning(pruning_table(view)),
                      "holdout accuracy against fraction kept (mean and 95% interval)")
        report.conclude("pruning", pruning_conclusion(view))


def _retraining_checks(report: _Page) -> None:
    """The section "Checked by retraining": every measured check of ``jobs/ablate.py``, each with
    its conclusion."""
    view = report.view
    report.add("<h2>Checked by retraining</h2>")
    report.add(f"<p>What the fit claims, checked by training models with chosen players in or out "
               f"(jobs/ablate.py; {docs_link(report.out, 'ablation.md')}).</p>")
    for name in view.ablations():
        try:
            checks = view.ablation(name)
            design = checks.attrs["design"]
            summary = pd.read_csv(view.folder.ablation_results(name)[1])
        except (AnalysisError, StoreError, OSError) as err:
            report.add(f"<h3>{escape(name)}</h3><p class='missing'>{escape(str(err))}</p>")
            report.conclude(f"checked by retraining, {name}", "this check cannot be read: nothing to conclude "
                                                              "from it")
            continue
        report.add(f"<h3>{escape(name)}</h3><p>{escape(ABLATION_TEXT[design])}</p>")
        report.table(summary, "removals" if design == "removal" else "pair checks")
        if design == "removal":
            path, paired = view.folder.ablation_results(name)[2], None
            if path.exists():
                report.add("<p>Each method's drop minus linear's on the same targets, paired over targets.</p>")
                paired = pd.read_csv(path)
                report.table(paired, "removal pairs")
            report.figure(("ablation", name), lambda: plot_removals(checks),
                          "margin drop against k, per method (mean and 95% interval over targets)")
            report.conclude(f"checked by retraining, {name}", check_conclusion(design, summary, paired))
            continue
        report.figure(("ablation", name), lambda: plot_pairs(checks, "held-out models" if design == "heldout"
                                                             else "retrained"),
                      "measured against predicted interaction, with 95% intervals (controls grey)")
        shown = checks.sort_values(["control", "rank"]).head(40)
        columns = [c for c in ("target", "i", "j", "kind", "predicted", "measured", "lo", "hi", "exact", "confirmed")
                   if c in shown]
        report.table(shown[columns].assign(target=[view.target_name(int(t)) for t in shown["target"]],
                                           i=[view.player_name(int(p)) for p in shown["i"]],
                                           j=[view.player_name(int(p)) for p in shown["j"]]), "pair rows")
        report.conclude(f"checked by retraining, {name}", check_conclusion(design, summary, None))


def run_report(run_dir, *, progress: bool = True, force: bool = False) -> StageResult:
    """The report stage: its :class:`~datamodels.run.stage_result.StageResult` (``written``: the
    page, its faithfulness table and its conclusions), up to date when the files it reads (the
    shards, the fit and pruning tables, the players' labels) are those of its last run and the
    page is in place (``force`` redoes it). Works without pruning results, and on a run without its dataset.
    It has no settings (no config group) and shows no progress: ``progress`` is taken for the
    stages' common call."""
    folder = RunFolder(run_dir)
    reads = {"run": folder.run_json, "interactions": folder.interactions_file(),
             "fit_metrics": folder.fit_metrics_file(), "keep_sets": folder.keep_sets_file,
             "evaluation": folder.evaluation, "duplicates": folder.duplicate_candidates,
             **{f"ablation {p.parent.parent.name}": p for p in folder.ablations_dir.glob("*/results/checks.parquet")},
             **{f"labels {path.parent.name}": path for path in folder.label_files}}
    # shards by name, size and time (as the fit-ready layout tracks them): reading them all is the sweep's size
    shards = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in shard_files(folder.shards)[0]}
    inputs = StageInputs(folder.report_record, reads, {"shards": shards})
    written = [folder.report_page, folder.report_faithfulness, folder.report_page.parent / CONCLUSIONS]
    if not force and inputs.unchanged(written):
        return StageResult("report", up_to_date=True)
    write_report(RunView.open(folder.root), folder.report_page)
    inputs.save()
    return StageResult("report", written)



def outputs(run_dir) -> list[str]:
    """One line per output the run folder holds (of those ``make demo`` writes), with what it is."""
    folder = RunFolder(run_dir)
    table, paired, _ = folder.evaluation_summaries
    described = [(folder.shards, "margins of every model, a parquet file per shard (pandas, pyarrow, DuckDB)"),
                 (folder.interactions_file(), "main effects, synergy and redundancy per target"),
                 (folder.fit_metrics_file(), "held-out R^2 and Spearman (LDS) per target and engine"),
                 (folder.keep_sets_file, "the kept players of every pruning method and fraction"),
                 (table, "holdout accuracy of pruned training sets (and .png)"),
                 (paired, "each method minus the best baseline, paired by seed"),
                 (folder.duplicate_pairs, "each candidate duplicate pair, measured (jobs/duplicates.py)"),
                 (folder.duplicate_candidates, "the duplicate pairs' groups, ranked (jobs/duplicates.py)"),
                 (folder.report_page, "all of it as a page; notebooks in analysis/"),
                 (folder.report_faithfulness, "every fitted target's faithfulness, beside the page"),
                 (folder.report_page.parent / CONCLUSIONS, "the page's conclusion of each section, one per line")]
    return [f"  {os.path.relpath(path, folder.root):<30} {what}" for path, what in described if path.exists()]
