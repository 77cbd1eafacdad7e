"""Faithfulness on a real digits sweep against the number of models used, and the noise ceiling.

    make bench-fit-digits    # the 2,000-model sweep (demo players, 1,000 masks x 2 seeds), then this
    .venv/bin/python -m benchmarks.bench_fit_digits --run runs/digits-repeats [--budgets 100,200,400,800,1600]

ProxySPEX and the linear datamodel are fitted to the same targets on the first ``b`` models of
the fit split, for each budget ``b``, and judged on the same held-out models (the fit stage's
seeded split, repeats of a mask kept together). The sweep trains each mask with two seeds, so
the noise ceiling (the R^2 the true per-mask mean reaches against single models) is measured
and each R^2 is also given as a fraction of it.
"""

import argparse
import os
import platform
import time

from benchmarks.harness import cpu_name, pin_threads, save_results

from datamodels.views.analysis import RunView, faithfulness_vs_models
from datamodels.fit.faithfulness import noise_ceiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/digits-repeats", help="a sweep's run folder (sweep.repeats > 1)")
    parser.add_argument("--budgets", default="100,200,400,800,1600", help="models fitted on, comma-separated")
    parser.add_argument("--targets", type=int, default=200, help="the first this many targets are fitted")
    parser.add_argument("--workers", type=int, default=2, help="fit processes, one thread each")
    args = parser.parse_args()
    pin_threads()

    view = RunView.open(args.run)
    models = view.models
    targets = list(range(min(args.targets, models.target_margins.shape[0])))
    ceilings = [noise_ceiling(view.margins(t), models.mask_id) for t in targets]
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}")
    print(f"sweep: {args.run}: {len(models.model_index)} models, {models.masks.n} players, "
          f"{len(targets)} targets fitted, median noise ceiling {sorted(ceilings)[len(ceilings) // 2]:.3f}")
    start = time.perf_counter()
    table = faithfulness_vs_models(view, [int(b) for b in args.budgets.split(",")], targets=targets,
                                   workers=args.workers, progress=True)
    print(table.to_string(index=False, float_format="%.3f"))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    save_results("bench_fit_digits", table.to_dict("records"))


if __name__ == "__main__":
    main()
