"""How the report (:mod:`datamodels.views.report`, what it says) is written as HTML: :class:`Page`,
which each section adds to (its body, its figures drawn once each and written beside it as PNG
files, its tables with their legends, each section's conclusion, and a section that lacks an input
or fails reading one: said so, and the page goes on), the conclusions file beside the page
(:data:`CONCLUSIONS`, read back by :func:`conclusions`), and the docs the page cites, copied beside
it with the docs pages they link to (:func:`docs_link`), so that the report folder can be shared.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager
from html import escape
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from ..errors import StoreError
from ..run.folder import RunFolder
from ..sweep.run_data import AnalysisError
from .report_text import LEGENDS, MISSING
from .run_view import RunView

DOCS = Path(__file__).resolve().parents[2] / "docs"

# A relative Markdown link of a docs page: ``](target#anchor)`` (not a web address or an anchor alone).
DOC_LINK = re.compile(r"\]\((?![a-z]+:|#)([^)#\s]+)(?:#[^)\s]*)?\)")


def _copy_docs(out: Path, name: str) -> None:
    """Copy the docs page ``name`` under ``out/docs/``, and every docs page it links to, and so on:
    the copied pages' relative links then resolve inside the report folder."""
    todo, seen = [name], set()
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        target = out / "docs" / page
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DOCS / page, target)
        for link in DOC_LINK.findall((DOCS / page).read_text()):
            linked = os.path.normpath(os.path.join(os.path.dirname(page), link))
            if not linked.startswith("..") and (DOCS / linked).is_file():
                todo.append(linked)


def docs_link(out: Path, name: str) -> str:
    """A link to one of the package's docs, copied beside the page with the pages it links to (a
    relative link that still works when the report folder is shared); the bare name where the
    docs are not installed."""
    if not (DOCS / name).exists():
        return f"docs/{name}"
    _copy_docs(out, name)
    return f'<a href="docs/{escape(name)}">docs/{escape(name)}</a>'


# Beside the page: one line per section, its conclusion (what jobs/report.py prints).
CONCLUSIONS = "conclusions.txt"


class Page:
    """The page being written, which each section function adds to: its body, its figures (each
    drawn once), its tables with their legends, and each section's conclusion. ``inputs``: what
    the sections read, by name (the file or folder in the run, what it holds, the job that writes it)."""

    def __init__(self, view: RunView, page: Path, inputs: dict[str, tuple[Path, str, str]]):
        self.view, self.page, self.out = view, page, page.parent
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("figure-*.png"):  # figures of an earlier page that this one may not redraw
            old.unlink()
        self.body: list[str] = []
        self.written: dict[tuple, str] = {}  # what a figure shows -> its file, so that none is drawn twice
        self.conclusions: list[tuple[str, str]] = []
        self.na_reasons = {c: why.format(repeats=view.meta.get("repeats")) for c, why in MISSING.items()}
        self.inputs = inputs

    def add(self, html: str) -> None:
        self.body.append(html)

    def figure(self, key: tuple, draw, caption: str) -> None:
        if key not in self.written:
            self.written[key] = f"figure-{len(self.written) + 1:02d}.png"
            fig = draw()
            fig.savefig(self.out / self.written[key], dpi=110)
            plt.close(fig)
        self.add(f'<figure><img src="{self.written[key]}" alt="{escape(caption)}">'
                 f'<figcaption>{escape(caption)}</figcaption></figure>')

    def table(self, frame: pd.DataFrame, legend: str) -> None:
        """The table, then its legend: what each column holds; a column with no value in this run
        is left out, and one with some says why (``n/a``)."""
        self.add(_table_html(frame, LEGENDS[legend], self.na_reasons))

    def conclude(self, section: str, text: str) -> None:
        """The section's last sentence: its conclusion, computed from the data it shows."""
        self.conclusions.append((section, text))
        self.add(f'<p class="conclusion"><b>Conclusion:</b> {escape(text)}.</p>')

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.view.folder.root)

    def lacks(self, section: str, *needs: str, title: str | None = None) -> bool:
        """Whether any of ``needs`` (keys of ``inputs``) is missing from the run; if so the
        section (headed ``title`` where it has not written its heading) names each with the job
        that writes it, and concludes that it cannot conclude."""
        gone = [self.inputs[need] for need in needs if not self.inputs[need][0].exists()]
        if not gone:
            return False
        if title:
            self.add(f"<h2>{escape(title)}</h2>")
        for path, what, command in gone:
            self.add(f"<p class='missing'>No {escape(what)} yet: <code>{escape(self.relative(path))}</code> is "
                     f"missing; run <code>{escape(command)}</code>.</p>")
        paths = ", ".join(self.relative(path) for path, _, _ in gone)
        self.conclude(section, f"no {' and '.join(what for _, what, _ in gone)} yet ({paths} "
                               f"{'is' if len(gone) == 1 else 'are'} missing), so nothing to conclude")
        return True

    @contextmanager
    def reading(self, section: str, title: str | None = None):
        """The body of a section: an error of its inputs (a file unreadable, or of another run)
        ends this section, saying so, and the page goes on with the next. ``title``: the heading
        to write before the error where the body failed before writing its own."""
        body, concluded = len(self.body), len(self.conclusions)
        try:
            yield
        except (AnalysisError, StoreError) as err:
            if title and not any(part.startswith("<h2>") for part in self.body[body:]):
                self.add(f"<h2>{escape(title)}</h2>")
            self.add(f"<p class='missing'>{escape(str(err))}</p>")
            if len(self.conclusions) == concluded:
                self.conclude(section, "this section stops at the error above: nothing more can be concluded "
                                       "from it")

    def write(self) -> Path:
        style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
                 "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:0.85em;color:#555}"
                 ".table{border-collapse:collapse;font-size:0.85em}.table td,.table th{padding:2px 8px;"
                 "border-bottom:1px solid #ddd;text-align:right}.missing{color:#a33}"
                 ".legend{font-size:0.8em;color:#555}.conclusion{border-left:3px solid #4a7;padding-left:6px}")
        self.page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>datamodels report</title>"
                             f"<style>{style}</style></head><body>{''.join(self.body)}</body></html>")
        (self.out / CONCLUSIONS).write_text("".join(f"{section}: {text}.\n" for section, text in self.conclusions))
        return self.page


def _table_html(frame: pd.DataFrame, legend: dict, missing: dict) -> str:
    """``frame`` as HTML with its legend: every column explained (``legend``; numeric column
    names are kept fractions, explained once by ``legend["fraction"]``). A column without any
    value is left out and the legend says why (``missing``); one with some missing values shows
    them as ``n/a`` and its entry says why."""
    def key(column) -> str:
        return "fraction" if isinstance(column, (int, float)) else column

    notes, shown = [], frame
    for column in frame.columns:
        if len(frame) and frame[column].isna().all():
            shown = shown.drop(columns=column)
            notes.append(f"<b>{escape(str(column))}</b> is left out: "
                         f"{escape(missing.get(key(column), 'it has no value in this run'))}")
    entries: dict[str, list] = {}
    for column in shown.columns:
        text = legend.get(key(column), "no description")
        if shown[column].isna().any():
            text += f" (n/a: {missing.get(key(column), 'no value')})"
        entries.setdefault(text, []).append(str(column))
    legend_html = "; ".join(f"<b>{escape(', '.join(names))}</b>: {escape(text)}" for text, names in entries.items())
    html = shown.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="table", na_rep="n/a")
    return f"{html}<p class=\"legend\">{'. '.join([legend_html, *notes])}.</p>"


def conclusions(run_dir) -> list[str]:
    """The report's conclusions, one line per section (as the page states them), or none before
    the report is written: what ``jobs/report.py`` prints."""
    path = RunFolder(run_dir).report_page.parent / CONCLUSIONS
    return path.read_text().splitlines() if path.exists() else []
