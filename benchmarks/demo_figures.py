"""The figures the docs give for ``make demo``, computed from the run, and the check that the
pages still hold them.

A figure lives in a page between ``<!-- figures:NAME -->`` and ``<!-- /figures -->``: a block
this script writes from the run (``--write``) and compares with it (``--check``: exit 1 and a
diff for every block that drifted, e.g. after a change to the fit). ``make docs-check``, which
CI runs after the tests, runs ``make demo`` and then ``--check``, so a page cannot go on
citing what the code no longer gives. The prose around a block cites no number of its own.

The run is deterministic on CPU for a given thread count (``make demo``: two joblib workers
of one torch thread each): the same commit gives the same margins, fits and keep-sets.

    python -m benchmarks.demo_figures --run runs/demo --write   # refresh the pages
    python -m benchmarks.demo_figures --run runs/demo --check   # what make docs-check runs
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from benchmarks.harness import ROOT, save_results
from datamodels.views.analysis import RunView, judge_triples, pruning_conclusion, strongest_pair
from datamodels.pruning import paired_differences, summarize

PAGES = (ROOT / "docs" / "pruning.md",)
BLOCK = re.compile(r"(<!-- figures:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)
METHOD_NAMES = {"linear": "linear datamodel", "proxyspex": "ProxySPEX"}
PRUNING_COLUMNS = ("interactions", "linear", "stratified", "random", "ccs", "el2n")


def _ci(mean: float, low: float, high: float, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"{fmt.format(mean)} [{fmt.format(low)}, {fmt.format(high)}]"


def run_block(view: RunView) -> str:
    accuracy = pq.read_table(view.folder.shards, columns=["holdout_acc"]).column("holdout_acc").to_numpy()
    return (f"{len(accuracy):,} models; holdout accuracy of the sweep's models: mean {accuracy.mean():.3f}, "
            f"lowest {accuracy.min():.3f}.\n")


def faithfulness_block(view: RunView) -> str:
    metrics = view.fit_metrics
    lines = ["| engine | targets | R^2 q25 | R^2 median | R^2 q75 | Spearman (LDS) median |", "|---|---|---|---|---|---|"]
    for method in ("linear", "proxyspex"):
        rows = metrics[metrics["engine"] == method]
        q25, q50, q75 = rows["r2"].quantile([0.25, 0.5, 0.75])
        lines.append(f"| {METHOD_NAMES[method]} | {len(rows)} | {q25:.3f} | {q50:.3f} | {q75:.3f} | "
                     f"{rows['spearman'].median():.3f} |")
    by_target = metrics.pivot(index="target", columns="engine", values="r2").dropna()
    gain = by_target["proxyspex"] - by_target["linear"]
    verdict = "more" if gain.median() > 0 else "less"
    lines += ["", f"ProxySPEX is {verdict} faithful than the linear datamodel in held-out R^2: per target "
                  f"the median difference is {gain.median():+.3f}, and ProxySPEX is higher on "
                  f"{(gain > 0).mean():.0%} of the {len(gain)} targets."]
    return "\n".join(lines) + "\n"


def _strongest(view: RunView, kind: str) -> str:
    """The pair of ``kind`` the fit's console line and the report name (:func:`strongest_pair`)."""
    row = strongest_pair(view, kind, "proxyspex")
    if row is None:
        return "none"
    return (f"{row['players'].replace(' + ', ' and ')} on {view.target_name(int(row['target']))} "
            f"(Möbius {row['mobius']:+.2f}, {row['strength']:.2f} residual sd)")


def interactions_block(view: RunView) -> str:
    pairs = view.terms(engine="proxyspex", orders=[2])
    triples = judge_triples(view, view.terms(engine="proxyspex", orders=[3], members=False), "proxyspex")
    pair_kinds, triple_kinds = pairs["kind"].value_counts(), triples["kind"].value_counts()
    same_class = pd.Series([view.player_class(int(a)) == view.player_class(int(b)) for a, b in pairs["members"]],
                           index=pairs.index, dtype=bool)
    share = {kind: f"{same_class[pairs['kind'] == kind].mean():.0%}" if pair_kinds.get(kind, 0) else "none"
             for kind in ("redundancy", "synergy")}
    targets = view.fit_metrics.query("engine == 'proxyspex'")["target"].nunique()
    return (f"ProxySPEX kept {len(pairs):,} pairs and {len(triples):,} triples over the {targets} targets (after "
            f"its tested refit). Pairs: {pair_kinds.get('redundancy', 0):,} **redundant**, "
            f"{pair_kinds.get('synergy', 0):,} **synergistic**; {share['redundancy']} of the redundant pairs join two "
            f"clusters of the same class ({share['synergy']} of the synergistic ones). Triples, judged as groups "
            f"(`judge_triples`): {triple_kinds.get('redundancy', 0):,} redundant, {triple_kinds.get('synergy', 0):,} "
            f"synergistic, {triple_kinds.get('mixed', 0):,} mixed.\n"
            f"The strongest redundant pair: {_strongest(view, 'redundancy')}.\n"
            f"The strongest synergistic pair: {_strongest(view, 'synergy')}.\n")


def pruning_block(view: RunView) -> str:
    table = summarize(view.pruning).set_index(["fraction", "method"])
    methods = [m for m in PRUNING_COLUMNS if m in table.index.get_level_values("method")]
    lines = ["| kept | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for fraction in sorted(table.index.get_level_values("fraction").unique(), reverse=True):
        rows = table.loc[fraction]
        best = rows["mean"].idxmax()
        cells = [("**{}**" if m == best else "{}").format(_ci(*rows.loc[m, ["mean", "ci_low", "ci_high"]]))
                 if m in rows.index else "" for m in methods]
        lines.append(f"| {fraction:g} | " + " | ".join(cells) + " |")
    paired = paired_differences(view.pruning)
    paired = paired[paired["method"] == "interactions"].sort_values("fraction", ascending=False)
    lines += ["", "`interactions` minus the best baseline at each fraction, paired by seed: " + "; ".join(
        f"{_ci(r.difference, r.ci_low, r.ci_high, signed=True)} at {r.fraction:g} (against `{r.baseline}`)"
        for r in paired.itertuples()) + "."]
    lines.append(f"So on the demo the {pruning_conclusion(view)}.")
    return "\n".join(lines) + "\n"


BLOCKS = {"demo-run": run_block, "demo-faithfulness": faithfulness_block,
          "demo-interactions": interactions_block, "demo-pruning": pruning_block}


def page_blocks(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def fill(text: str, figures: dict[str, str]) -> str:
    """``text`` with every figures block replaced by its figures."""
    def replace(match: re.Match) -> str:
        if match["name"] not in figures:
            raise SystemExit(f"error: a page has a block figures:{match['name']}; known: {', '.join(sorted(figures))}")
        return match.group(1) + figures[match["name"]] + match.group(4)
    return BLOCK.sub(replace, text)


def _shown(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "demo"), help="the demo's run folder")
    parser.add_argument("--pages", nargs="+", type=Path, default=list(PAGES), help="the pages holding figures blocks")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the pages' blocks from the run")
    action.add_argument("--check", action="store_true", help="exit 1 when a page's block differs from the run")
    args = parser.parse_args(argv)

    view = RunView(Path(args.run).absolute())
    figures = {name: block(view) for name, block in BLOCKS.items()}
    drifted, used = [], set()
    pages = [page.absolute() for page in args.pages]
    for page in pages:
        text = page.read_text()
        used |= set(page_blocks(text))
        new = fill(text, figures)
        if new == text:
            continue
        if args.write:
            page.write_text(new)
            print(f"{_shown(page)}: figures rewritten from {args.run}")
        else:
            drifted.append(page)
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       f"{_shown(page)} (the page)",
                                                       f"{_shown(page)} (from {args.run})"))
    save_results("demo_figures", [{"block": name, "figures": text} for name, text in figures.items()],
                 drifted=[_shown(page) for page in drifted])
    if unused := set(BLOCKS) - used:
        print(f"error: no page holds the blocks {', '.join(sorted(unused))}", file=sys.stderr)
        return 1
    if drifted:
        print(f"error: the figures of {', '.join(_shown(p) for p in drifted)} are not what "
              f"{args.run} gives (diff above): if the change is meant, run "
              f"python -m benchmarks.demo_figures --run {args.run} --write and reread the prose", file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(figures)} figure blocks in {', '.join(_shown(p) for p in pages)} match {args.run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
