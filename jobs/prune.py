"""Choose keep-sets of the training players at a grid of kept fractions, for every method.

    python jobs/prune.py [prune.fractions=[0.5,0.2]] [prune.methods=[interactions,stratified]]
    python jobs/prune.py prune.surrogates=matched     # a sweep over an alpha grid, fitted per alpha

Reads the run's sweep and its fits (<run_dir>/fit, or <run_dir>/fit/alpha-F for matched
surrogates); writes <run_dir>/prune/keep_sets.parquet. datamodels/pruning.py defines the methods.
"""

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import job
from datamodels.fitting import FILES, fit_dir
from datamodels.pruning import load_surrogates, make_keep_sets
from datamodels.stage_inputs import StageInputs
from datamodels.store import write_frame
from datamodels.sweep import SweepRun


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    p = OmegaConf.to_container(cfg.prune, resolve=True)
    settings = {k: v for k, v in p.items() if k not in ("workers", "keep_sets")}
    fits = {fit_dir(run_dir, f if p["surrogates"] == "matched" else None) for f in p["fractions"] if f < 1}
    reads = {"run.json": run_dir / "run.json"} | {f"{d.relative_to(run_dir)}/{name}": d / name
                                                   for d in fits for name in FILES}
    out = run_dir / "prune" / "keep_sets.parquet"
    inputs = StageInputs(run_dir / "prune" / ".inputs-keep_sets.json", reads, settings)
    if not cfg.force and inputs.unchanged([out]):
        print(f"prune: {out} is up to date with the fits and settings, skipped (force=true redoes it)")
        return
    run = SweepRun.open(run_dir)
    sources = {"interactions": p["fit_method"], "linear": "linear"}
    surrogates = load_surrogates(run_dir, {m: sources[m] for m in p["methods"] if m in sources}, p["fractions"],
                                 p["surrogates"])
    keep = make_keep_sets(run, p["methods"], p["fractions"], surrogates, draws=p["eval_seeds"], seed=p["seed"],
                          quotas=p["class_quotas"], min_per_class=p["min_per_class"],
                          synergy_threshold=p["synergy_threshold"], el2n_seeds=p["el2n_seeds"],
                          el2n_epochs=p["el2n_epochs"], ccs_cutoff=p["ccs_cutoff"], ccs_bins=p["ccs_bins"],
                          progress=cfg.progress)
    path = write_frame(out, keep,
                       {"fingerprint": run.meta["fingerprint"], "n": run.n, "source_run": str(run_dir),
                        "settings": settings})
    print(f"{path}: {len(keep)} keep-sets ({', '.join(p['methods'])} at fractions {p['fractions']}; "
          f"{p['eval_seeds']} draws of each randomised method)")
    inputs.save()


if __name__ == "__main__":
    main()
