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

from .analysis import (KINDS, AnalysisError, RunView, class_pair_patterns, faithfulness_summary, plot_faithfulness,
                       plot_interactions, plot_player, plot_target, pruning_grid, pruning_paired, pruning_table,
                       strongest_targets, top_effects)
from .errors import StoreError
from .pruning import plot_pruning
from .run_folder import RunFolder
from .stage_inputs import StageInputs
from .store import shard_files

DOCS = Path(__file__).resolve().parents[1] / "docs"

READING_GUIDE = """<h2>How to read this report</h2>
<p>Many models were trained, each on a random subset of the training set. A <b>player</b> is what
a subset keeps or drops: one training image, or a group of images (a class or a cluster of
look-alikes; figures show a group's first image and say how many it has). A <b>target</b> is a
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

CLASS_PAIRS_TEXT = ("Each row: a target's class (target_class), the classes of the two members of a pair "
                    "(class_a, class_b), and how many of the fitted pairs of that kind have these classes (pairs).")


def _docs_link(out: Path, name: str) -> str:
    """A link to one of the package's docs, copied beside the page (a relative link that still
    works when the report folder is shared); the bare name where the docs are not installed."""
    source = DOCS / name
    if not source.exists():
        return f"docs/{name}"
    (out / "docs").mkdir(exist_ok=True)
    shutil.copyfile(source, out / "docs" / name)
    return f'<a href="docs/{escape(name)}">docs/{escape(name)}</a>'


def write_report(view: RunView, page: str | os.PathLike, targets_per_kind: int = 2) -> Path:
    """The page, its figures and the docs it cites, in the page's folder; returns the page."""
    page = Path(page)
    out = page.parent
    out.mkdir(parents=True, exist_ok=True)
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

    meta = view.sweep_run.meta
    body.append(f"<h1>datamodels report: {escape(view.run_dir.name)}</h1>")
    body.append(f"<p>{meta['dataset']} (fingerprint {meta['fingerprint']}), {meta['n']} players "
                f"({meta['players']}), {meta['T']} targets, model {meta['model']}, design {meta['design']} "
                f"alpha {meta['alpha']}, {len(view.models.model_index)} of {meta['num_models']} models collected.</p>")
    body.append(READING_GUIDE.format(docs=_docs_link(out, "interactions.md"), pruning=_docs_link(out, "pruning.md")))
    try:
        body.append("<h2>Faithfulness on held-out models</h2>")
        table(faithfulness_summary(view).round(4).reset_index().set_axis(
            ["method", "R2 q25", "R2 median", "R2 q75", "Spearman (LDS) median"], axis=1))
        figure(("faithfulness",), lambda: plot_faithfulness(view), "held-out R^2 per target and method")
        for kind in KINDS:
            body.append(f"<h2>Targets with the strongest {KIND_TITLE[kind]}</h2>")
            chosen = strongest_targets(view, kind, targets_per_kind)
            body.append(f"<p>{KIND_TEXT[kind]}</p>" if chosen else f"<p>No {KIND_TITLE[kind]} found.</p>")
            for t in chosen:
                figure(("target", t), lambda: plot_target(view, t), f"target {t}: image and margin distribution")
                figure(("effects", t, kind), lambda: plot_interactions(view, t, kind),
                       f"target {t}: its strongest {KIND_TITLE[kind]}")
            if chosen and (view.player_size > 1).any():
                members = top_effects(view, chosen[0], kind=kind, k=1)["members"][0]
                for player in members:
                    figure(("player", int(player)), lambda: plot_player(view, int(player)),
                           f"every image of player #{player}, in target {chosen[0]}'s strongest {KIND_TITLE[kind]}")
        body.append("<h2>Which classes pair up</h2>")
        body.append(f"<p>{CLASS_PAIRS_TEXT}</p>")
        for kind in ("synergy", "redundancy"):
            body.append(f"<h3>{kind}</h3>")
            table(class_pair_patterns(view, kind).head(10))
    except AnalysisError as err:
        body.append(f"<p class='missing'>{escape(str(err))}</p>")
    body.append("<h2>Pruning</h2>")
    body.append(f"<p>Keep-sets of each method at each kept fraction, retrained and judged on the holdout "
                f"split only (never on the targets). The methods and how to read the results: "
                f"{_docs_link(out, 'pruning.md')}.</p>")
    try:
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


def run_report(run_dir, force: bool = False) -> Path | None:
    """The report stage: the page, or None when the files it reads (the shards, the fit and
    pruning tables) are those of its last run and the page is in place (``force`` redoes it)."""
    folder = RunFolder(run_dir)
    reads = {"run": folder.run_json, "interactions": folder.interactions(), "fit_metrics": folder.fit_metrics(),
             "keep_sets": folder.keep_sets, "evaluation": folder.evaluation}
    # shards by name, size and time (as the fit-ready layout tracks them): reading them all is the sweep's size
    shards = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in shard_files(folder.shards)[0]}
    inputs = StageInputs(folder.report_record, reads, {"shards": shards})
    if not force and inputs.unchanged([folder.report_page]):
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
                 (folder.report_page, "all of it as a page; notebooks in analysis/")]
    return [f"  {os.path.relpath(path, folder.root):<28} {what}" for path, what in described if path.exists()]
