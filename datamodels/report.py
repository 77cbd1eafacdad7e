"""The run as one static HTML page with PNG figures (``jobs/report.py``): ``<run_dir>/report/``.

For users without a notebook server: the notebooks' views (:mod:`datamodels.analysis`) of the
fits and of the pruning, with a reading guide. Sections whose stage has not run yet say so
instead of failing. The docs it cites are copied beside the page, so the folder can be shared.
:func:`run_report` is the stage: skipped when the files it reads are those of its last run.
"""

from __future__ import annotations

import os
import shutil
from html import escape
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .analysis import (KINDS, AnalysisError, RunView, class_pair_patterns, default_method, faithfulness_summary,
                       plot_faithfulness, plot_interactions, plot_player, plot_target, pruning_grid, pruning_paired,
                       pruning_table, strongest_targets, strongest_terms, term_strength, top_effects,
                       worst_fitted_targets)
from .duplicates import named_candidates, plot_candidates
from .errors import StoreError
from .ablation.figures import plot_pairs, plot_removals
from .pruning import plot_pruning
from .run_folder import RunFolder
from .stage_inputs import StageInputs
from .store import shard_files

DOCS = Path(__file__).resolve().parents[1] / "docs"

READING_GUIDE = """<h2>How to read this report</h2>
<p>Many models were trained, each on a random subset of the training set. A <b>player</b> is what
a subset keeps or drops: one training image, or a group of images (a class or a cluster of
look-alikes; figures show a group's first image and say how many it has; a run without its
dataset names players by index and class, <i>player 123 (class 4)</i>). A <b>target</b> is a
test image whose <b>margin</b> (correct-class logit minus the best other) every model records.
For each target a sparse model of <i>subset &rarr; margin</i> is fitted, as a sum of Möbius
coefficients <i>m(S)</i> over the sets of players <i>S</i> the subset keeps.</p>
<ul><li><b>Main effect</b> <i>m({{i}})</i>: the margin player <i>i</i> adds when kept. Positive: it
helps the model get the target right; negative: it pushes towards another class.</li>
<li><b>Synergy</b>: a pair's <i>m({{i,j}})</i> has the same sign as the sum of its members' main
effects: together they do more than the sum of their parts.</li>
<li><b>Redundancy</b>: <i>m({{i,j}})</i> has the opposite sign: together they do less than the sum,
each covers for the other (near-duplicates). Triples are judged the same way.</li></ul>
<p><b>Faithfulness</b>: how well the fitted model predicts margins of models it never saw
(held-out R^2, and Spearman rank correlation, the LDS). Details: {docs}; pruning: {pruning}.</p>"""

KIND_TITLE = {"main": "main effects", "synergy": "synergy", "redundancy": "redundancy"}
KIND_TEXT = {
    "main": "Each row: the target, then one training player with its main effect m: the margin it adds "
            "when kept (m > 0 helps the model get the target right).",
    "synergy": "Each row: the target, then the members of one synergistic pair or triple, with its Möbius "
               "coefficient m. Same sign as the sum of the members' main effects: they matter together.",
    "redundancy": "Each row: the target, then the members of one redundant pair or triple, with its Möbius "
                  "coefficient m. Opposite sign to the sum of the members' main effects: one suffices, the other adds "
                  "little once it is kept.",
}

# The table of the strongest terms over all targets shows at most this many of one target.
TERMS_PER_TARGET = 2

STRENGTH_TEXT = ("Each row: a target, the members of one pair or triple of its fit, its Möbius coefficient m, and "
                 "|m| in units of the target's residual sd (the sd of what the fit leaves unexplained on held-out "
                 "models, sqrt(1 - R^2) times the margin's sd): the criterion that ranks terms and targets here, so "
                 f"that a term of a noisy target does not outrank a sharper one of a well-fitted target. At most "
                 f"{TERMS_PER_TARGET} terms of one target.")

KIND_BARS = ("Each target: the distribution of its margin over the models, then one bar per term: its Möbius "
             "coefficient m (blue: m > 0), labelled with its members, by player index and class.")

DUPLICATES_TEXT = ("Groups of players that cancel each other's effect: for each pair, the fraction of its members' "
                   "main effect its pair term cancels, pooled over the targets (1: exact duplicates, each teaching "
                   "what both do; 0: effects that add), and the pairs that significantly exceed "
                   "duplicates.min_fraction joined into groups where they share a player (jobs/duplicates.py, "
                   "{path}). Each row: the group's members, its score (the mean fraction of its pairs), the most "
                   "targets one of its pairs matters to, and its size. A curation script can keep one member of "
                   "each group, or send the group to review.")

CLASS_PAIRS_TEXT = ("Each row: {target}the classes of the two members of a pair (class_a, class_b), and how many of "
                    "the fitted pairs of that kind have these classes (pairs).")


def _docs_link(out: Path, name: str) -> str:
    """A link to one of the package's docs, copied beside the page (a relative link that still
    works when the report folder is shared); the bare name where the docs are not installed."""
    source = DOCS / name
    if not source.exists():
        return f"docs/{name}"
    (out / "docs").mkdir(exist_ok=True)
    shutil.copyfile(source, out / "docs" / name)
    return f'<a href="docs/{escape(name)}">docs/{escape(name)}</a>'


def _keep_set_sizes(view: RunView) -> pd.DataFrame:
    """Methods x kept fractions: players kept (the first draw), for a run whose keep-sets were not retrained."""
    first = view.keep_sets[view.keep_sets["draw"] == 0]
    grid = first.pivot(index="method", columns="fraction", values="size")
    return grid[sorted(grid.columns, reverse=True)].rename_axis(columns=None)


def write_report(view: RunView, page: str | os.PathLike, targets_per_kind: int = 2, top_terms: int = 20,
                 worst_targets: int = 10, top_groups: int = 10) -> Path:
    """The page, its figures, the table of every target's faithfulness and the docs it cites, in
    the page's folder; returns the page.

    What it shows is bounded whatever the number of targets ``T`` and players ``n``: the
    ``targets_per_kind`` targets whose strongest main effect, synergy and redundancy are largest
    relative to the target's residual sd (:func:`~datamodels.analysis.term_strength`), each with
    two figures; the ``top_terms`` strongest pairs and triples over all targets (same criterion,
    at most ``TERMS_PER_TARGET`` of one target) and the ``worst_targets`` worst-fitted targets of
    each method, as tables; faithfulness as quantiles and one
    histogram, with every target's row in ``faithfulness.csv`` beside the page; the ``top_groups``
    best candidate duplicate groups where jobs/duplicates.py ranked them. Players are
    shown as images where the run has them, else by index and class (``player 123 (class 4)``).
    """
    page = Path(page)
    out = page.parent
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("figure-*.png"):  # figures of an earlier page that this one may not redraw
        old.unlink()
    body: list[str] = []
    written: dict[tuple, str] = {}  # what a figure shows -> its file, so that none is drawn twice

    def figure(key: tuple, draw, caption: str) -> None:
        if key not in written:
            written[key] = f"figure-{len(written) + 1:02d}.png"
            fig = draw()
            fig.savefig(out / written[key], dpi=110)
            plt.close(fig)
        body.append(f'<figure><img src="{written[key]}" alt="{escape(caption)}">'
                    f'<figcaption>{escape(caption)}</figcaption></figure>')

    def table(frame: pd.DataFrame) -> None:
        body.append(frame.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="table"))

    meta = view.meta
    body.append(f"<h1>datamodels report: {escape(view.run_dir.name)}</h1>")
    try:
        collected = f"{len(view.models.model_index)} of {meta['num_models']} models collected"
    except AnalysisError:
        collected = f"{meta['num_models']} models planned, none collected into the fit-ready layout yet"
    images = "" if view.has_images else (" No dataset is linked to this run: players are shown by index"
                                         + (" and class." if view.player_labels is not None else "."))
    model = f"model {escape(str(meta['model']))}, " if meta["model"] else ""
    body.append(f"<p>{escape(str(meta['dataset']))} (fingerprint {escape(str(meta['fingerprint']))}), {meta['n']:,} "
                f"players ({escape(str(meta['players']))}), {meta['T']:,} targets, {model}design {meta['design']} "
                f"alpha {meta['alpha']}, {collected}.{escape(images)}</p>")
    body.append(READING_GUIDE.format(docs=_docs_link(out, "interactions.md"), pruning=_docs_link(out, "pruning.md")))
    try:
        metrics = view.fit_metrics
        body.append("<h2>Faithfulness on held-out models</h2>")
        metrics.sort_values(["method", "target"]).to_csv(view.folder.report_faithfulness, index=False)
        body.append(f"<p>Quantiles over the fitted targets of each method. Every target's row "
                    f"({len(metrics):,} rows: held-out R^2, Spearman, noise ceiling, working set, fit time) is in "
                    f'<a href="{view.folder.report_faithfulness.name}">{view.folder.report_faithfulness.name}</a>.</p>')
        table(faithfulness_summary(view).round(4).reset_index())
        figure(("faithfulness",), lambda: plot_faithfulness(view), "held-out R^2 per target and method")
        for fitted in sorted(metrics["method"].unique()):
            body.append(f"<h3>The {worst_targets} worst-fitted targets of {fitted}</h3>")
            worst = worst_fitted_targets(view, worst_targets, fitted)
            table(worst.drop(columns=["target", "method"]).rename(columns={"target_name": "target"}))
        method = default_method(view)
        strength = term_strength(view, method)
        body.append(f"<h2>The strongest interactions over all targets ({method})</h2>")
        body.append(f"<p>{STRENGTH_TEXT}</p>")
        terms = strongest_terms(view, top_terms, method, strength=strength, per_target=TERMS_PER_TARGET)
        if terms.empty:
            body.append(f"<p>No pairs or triples in the {method} fit.</p>")
        else:
            table(terms[["target_name", "players", "kind", "mobius", "strength"]].rename(
                columns={"target_name": "target", "mobius": "m", "strength": "|m| / residual sd"}))
        for kind in KINDS:
            body.append(f"<h2>Targets with the strongest {KIND_TITLE[kind]}</h2>")
            chosen = strongest_targets(view, kind, targets_per_kind, method, strength)
            text = KIND_TEXT[kind] if view.has_images else KIND_BARS
            body.append(f"<p>{text}</p>" if chosen else f"<p>No {KIND_TITLE[kind]} found.</p>")
            for t in chosen:
                figure(("target", t), lambda: plot_target(view, t),
                       f"{view.target_name(t)}: {'image and ' if view.has_images else ''}margin distribution")
                figure(("effects", t, kind), lambda: plot_interactions(view, t, kind, method=method),
                       f"{view.target_name(t)}: its strongest {KIND_TITLE[kind]}")
            if chosen and view.has_images and (view.player_size > 1).any():
                members = top_effects(view, chosen[0], kind=kind, k=1, method=method)["members"][0]
                for player in members:
                    figure(("player", int(player)), lambda: plot_player(view, int(player)),
                           f"every image of player #{player}, in target {chosen[0]}'s strongest {KIND_TITLE[kind]}")
        body.append("<h2>Which classes pair up</h2>")
        if view.player_labels is None:
            body.append("<p class='missing'>The players' classes are unknown in this run (no dataset linked, no "
                        "labels file).</p>")
        else:
            target = "a target's class (target_class), " if view.has_images else ""
            body.append(f"<p>{CLASS_PAIRS_TEXT.format(target=target)}</p>")
            for kind in ("synergy", "redundancy"):
                body.append(f"<h3>{kind}</h3>")
                table(class_pair_patterns(view, kind, method).head(10))
    except AnalysisError as err:
        body.append(f"<p class='missing'>{escape(str(err))}</p>")
    if view.folder.duplicate_candidates.exists():
        body.append("<h2>Candidate duplicates</h2>")
        body.append(f"<p>{DUPLICATES_TEXT.format(path=os.path.relpath(view.folder.duplicate_candidates, view.run_dir))}"
                    f"</p>")
        try:
            named = named_candidates(view, top_groups)
            if named.empty:
                body.append("<p>No pair cancels significantly more than duplicates.min_fraction of its members' effect.</p>")
            else:
                table(named)
                if view.has_images:
                    figure(("duplicates",), lambda: plot_candidates(view),
                           "the best candidate groups, each member's (first) image side by side")
        except (AnalysisError, StoreError) as err:
            body.append(f"<p class='missing'>{escape(str(err))}</p>")
    if view.ablations():
        _retraining_checks(view, out, body, figure, table)
    body.append("<h2>Pruning</h2>")
    body.append(f"<p>Keep-sets of each method at each kept fraction, retrained and judged on the holdout "
                f"split only (never on the targets). The methods and how to read the results: "
                f"{_docs_link(out, 'pruning.md')}.</p>")
    try:
        if not view.folder.keep_sets.exists():
            body.append("<p class='missing'>No keep-sets yet: run jobs/prune.py.</p>")
        elif not view.folder.evaluation.exists():
            body.append("<p>The keep-sets have not been retrained (jobs/evaluate_pruning.py; it needs the run's "
                        "dataset). Players kept by each method at each fraction:</p>")
            table(_keep_set_sizes(view).reset_index())
        else:
            body.append("<p>Holdout accuracy of models retrained on each keep-set under the full set's step budget: "
                        "mean and 95% interval over the seeds (the randomised methods: one draw per seed).</p>")
            table(pruning_grid(view).reset_index())
            body.append("<p>Each method minus the best baseline at that fraction, paired by seed (an interval "
                        "above 0: better than every baseline).</p>")
            table(pruning_paired(view).reset_index())
            figure(("pruning",), lambda: plot_pruning(pruning_table(view)),
                   "holdout accuracy against fraction kept (mean and 95% interval)")
    except (AnalysisError, StoreError) as err:
        body.append(f"<p class='missing'>{escape(str(err))}</p>")
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}"
             ".table{border-collapse:collapse;font-size:0.85em}.table td,.table th{padding:2px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}.missing{color:#a33}")
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>datamodels report</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    return page


ABLATION_TEXT = {
    "pairs": ("Each checked pair of the fit (and as many random control pairs on the same targets, grey) was "
              "trained as a 2x2 factorial on random backgrounds at the run's alpha: both, only i, only j, neither, "
              "one seed per background. Measured: the double difference f(S+i+j) - f(S+i) - f(S+j) + f(S) on the "
              "pair's target, mean and 95% interval over the backgrounds; predicted: the fit's expected interaction "
              "at alpha. Confirmed: significant (Benjamini-Hochberg at ablate.fdr over the checked pairs) with the "
              "predicted sign. A control confirmed is a false alarm."),
    "heldout": ("Every pair of the fit measured without training, on the fit's own held-out models: the double "
                "difference of the four cells' mean margins (both kept, only i, only j, neither), with its standard "
                "error. A first filter: few held-out models fall in each cell."),
    "removal": ("For chosen targets, sets of k players that each method says lower the target's margin most "
                "(interactions: the adaptive greedy on the fitted polynomial, which can take a redundant pair as a "
                "block; linear: the top k by weight; random: k players of the target's class), trained with and "
                "without the set, paired. Drop: the target's margin with the set minus without, mean over targets "
                "and 95% interval; flip rate: how often removing the set makes a right prediction wrong."),
}


def _retraining_checks(view: RunView, out: Path, body: list, figure, table) -> None:
    """The section "Checked by retraining": every measured check of ``jobs/ablate.py``."""
    body.append("<h2>Checked by retraining</h2>")
    body.append(f"<p>What the fit claims, checked by training models with chosen players in or out "
                f"(jobs/ablate.py; {_docs_link(out, 'ablation.md')}).</p>")
    for name in view.ablations():
        try:
            checks = view.ablation(name)
            design = checks.attrs["design"]
            summary = pd.read_csv(view.folder.ablation_results(name)[1])
        except (AnalysisError, StoreError, OSError) as err:
            body.append(f"<p class='missing'>{escape(str(err))}</p>")
            continue
        body.append(f"<h3>{escape(name)}</h3><p>{escape(ABLATION_TEXT[design])}</p>")
        table(summary)
        if design == "removal":
            paired = view.folder.ablation_results(name)[2]
            if paired.exists():
                body.append("<p>Each method's drop minus linear's on the same targets, paired over targets.</p>")
                table(pd.read_csv(paired))
            figure(("ablation", name), lambda: plot_removals(checks), "margin drop against k, per method (mean and "
                                                                      "95% interval over targets)")
            continue
        figure(("ablation", name), lambda: plot_pairs(checks, "held-out models" if design == "heldout"
                                                      else "retrained"),
               "measured against predicted interaction, with 95% intervals (controls grey)")
        shown = checks.sort_values(["control", "rank"]).head(40)
        columns = [c for c in ("target", "i", "j", "kind", "predicted", "measured", "lo", "hi", "exact", "confirmed")
                   if c in shown]
        table(shown[columns].assign(target=[view.target_name(int(t)) for t in shown["target"]],
                                    i=[view.player_name(int(p)) for p in shown["i"]],
                                    j=[view.player_name(int(p)) for p in shown["j"]]))


def run_report(run_dir, force: bool = False) -> Path | None:
    """The report stage: the page, or None when the files it reads (the shards, the fit and
    pruning tables, the players' labels) are those of its last run and the page is in place
    (``force`` redoes it). Works without pruning results, and on a run without its dataset."""
    folder = RunFolder(run_dir)
    reads = {"run": folder.run_json, "interactions": folder.interactions(), "fit_metrics": folder.fit_metrics(),
             "keep_sets": folder.keep_sets, "evaluation": folder.evaluation,
             "duplicates": folder.duplicate_candidates,
             **{f"ablation {p.parent.parent.name}": p for p in folder.ablations.glob("*/results/checks.parquet")},
             **{f"labels {path.parent.name}": path for path in folder.label_files}}
    # shards by name, size and time (as the fit-ready layout tracks them): reading them all is the sweep's size
    shards = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in shard_files(folder.shards)[0]}
    inputs = StageInputs(folder.report_record, reads, {"shards": shards})
    if not force and inputs.unchanged([folder.report_page, folder.report_faithfulness]):
        return None
    page = write_report(RunView.open(folder.root), folder.report_page)
    inputs.save()
    return page


def outputs(run_dir) -> list[str]:
    """One line per output the run folder holds (of those ``make demo`` writes), with what it is."""
    folder = RunFolder(run_dir)
    table, paired, _ = folder.evaluation_summaries
    described = [(folder.shards, "margins of every model, a parquet file per shard (pandas, pyarrow, DuckDB)"),
                 (folder.interactions(), "main effects, synergy and redundancy per target"),
                 (folder.fit_metrics(), "held-out R^2 and Spearman (LDS) per target and method"),
                 (folder.keep_sets, "the kept players of every pruning method and fraction"),
                 (table, "holdout accuracy of pruned training sets (and .png)"),
                 (paired, "each method minus the best baseline, paired by seed"),
                 (folder.duplicate_pairs, "each candidate duplicate pair, measured (jobs/duplicates.py)"),
                 (folder.duplicate_candidates, "the duplicate pairs' groups, ranked (jobs/duplicates.py)"),
                 (folder.report_page, "all of it as a page; notebooks in analysis/"),
                 (folder.report_faithfulness, "every fitted target's faithfulness, beside the page")]
    return [f"  {os.path.relpath(path, folder.root):<30} {what}" for path, what in described if path.exists()]
