"""The figures of docs/ablation.md, from the retraining checks ``make ablation-study`` measured.

    .venv/bin/python -m benchmarks.ablation_study runs/demo runs/classes-exhaustive runs/duplicates

Reads each run's ``ablations/*/results/`` (jobs/ablate.py) and prints, per run and check: the
confirmation table, the slope of measured on predicted, the agreement with the exhaustive truth,
the removal curves with each method against linear paired over targets, and the Spearman
correlation of predicted and measured drops; on the twins run, how many of each method's removal
sets take both twins of the target's twin pair, one, or none. Also writes the same as JSON
(``--json``, default ``runs/benchmarks/ablation_study.json``: a row per run and check). A run or check that is missing is said and skipped.
"""

import argparse
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.harness import pin_threads, save_results
from datamodels.ablation.measure import exact_agreement, removal_agreement
from datamodels.views.analysis import RunView


def twins_taken(view: RunView, removal: pd.DataFrame) -> pd.DataFrame:
    """Per method and k: of the removal sets on the target of a twin pair (the twin pair check's
    target, ``ablations/twins``), how many hold both twins of that pair, one, or none."""
    own = {int(t): {int(i), int(j)} for t, i, j in view.ablation("twins")[["target", "i", "j"]].itertuples(index=False)}
    rows = [(row.method, row.k, len(set(row.members) & own[int(row.target)])) for row in removal.itertuples()
            if int(row.target) in own]
    frame = pd.DataFrame(rows, columns=["method", "k", "twins"])
    table = frame.groupby(["method", "k"])["twins"].value_counts().unstack(fill_value=0)
    return table.reindex(columns=[0, 1, 2], fill_value=0).rename(columns={0: "none", 1: "one", 2: "both"}).reset_index()


def report(run: Path, out: dict) -> None:
    view = RunView.open(run)
    names = view.ablations()
    print(f"\n=== {run}: {', '.join(names) or 'no retraining check measured'}")
    for name in names:
        checks = view.ablation(name)
        summary = pd.read_csv(view.folder.ablation_results(name)[1])
        design = checks.attrs["design"]
        print(f"\n--- {name} ({design}, {len(checks)} checks)")
        print(summary.round(3).to_string(index=False))
        entry = {"design": design, "summary": summary.to_dict("records")}
        if design == "removal":
            paired_path = view.folder.ablation_results(name)[2]
            if paired_path.exists():
                paired = pd.read_csv(paired_path)
                print(paired.round(3).to_string(index=False))
                entry["paired"] = paired.to_dict("records")
            fit_method = [c for c in checks.columns if c.startswith("predicted_")]
            for column in fit_method:
                rho = removal_agreement(checks, column)
                print(f"Spearman(predicted by {column[10:]}, measured) over {len(checks)} sets: {rho:.3f}")
                entry[f"spearman_{column[10:]}"] = rho
            if "twins" in names:
                taken = twins_taken(view, checks)
                print("removal sets holding both twins of the target's twin pair, one, or none:")
                print(taken.to_string(index=False))
                entry["twins_taken"] = taken.to_dict("records")
        else:
            fitted = checks[~checks["control"]]
            if "exact" in checks:
                agree = exact_agreement(checks)
                print(f"within 2 standard errors of the exact double difference: {int(agree.sum())} of {len(checks)}")
                gap = (checks["measured"] - checks["exact"]) / np.sqrt(checks["se"] ** 2 + checks["exact_se"] ** 2)
                print(f"(measured - exact) / combined se: mean {gap.mean():+.2f}, sd {gap.std():.2f}")
                entry["exact_within_2se"] = int(agree.sum())
            if "rank" in fitted and fitted["rank"].ge(0).any():
                fitted = fitted.assign(right_sign=np.sign(fitted["measured"]) == np.sign(fitted["predicted"]),
                                       size=fitted["predicted"].abs())
                bins = pd.cut(fitted["rank"], [-1, 19, 99, 299, 10**9], labels=["0-19", "20-99", "100-299", "300+"])
                by_rank = fitted.groupby(bins, observed=True).agg(
                    pairs=("confirmed", "size"), confirmed=("confirmed", "sum"), right_sign=("right_sign", "sum"),
                    median_predicted=("size", "median"), median_se=("se", "median"))
                print(by_rank.to_string())
                entry["by_rank"] = by_rank.reset_index().astype({"rank": str}).to_dict("records")
        out[f"{run.name}/{name}"] = entry


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the figures (default runs/benchmarks/ablation_study.json)")
    args = parser.parse_args()
    pin_threads()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    out = {}
    for run in args.runs:
        if not (run / "ablations").is_dir():
            print(f"\n=== {run}: no ablations/ (run make ablation-study)")
            continue
        report(run, out)
    save_results("ablation_study", [{"check": check} | entry for check, entry in out.items()], path=args.json)


if __name__ == "__main__":
    main()
