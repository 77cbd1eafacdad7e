"""Check a fit's claims by retraining: pair confirmations and counterfactual removals.

    python jobs/ablate.py                                   # ablate=pairs: the fit's 20 strongest pairs + controls
    python jobs/ablate.py ablate=removal ablate.background=full
    python jobs/ablate.py ablate=heldout                    # every pair on the fit's held-out models, no training
    python jobs/ablate.py -m 'ablate.shard=range(0,64)' hydra/launcher=slurm   # then once more without shard

Plans the check from <run_dir>/fit (printing the models it trains and the projected time), trains
its child sweep in <run_dir>/ablations/<name>/ (resumable: re-running trains only what is
missing) and, once every model is there, writes <run_dir>/ablations/<name>/results/
(datamodels.ablation).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.ablation import AblateSettings, run_ablate
from datamodels.cli import in_multirun, job, launch


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    settings = AblateSettings.from_config(OmegaConf.to_container(cfg.ablate, resolve=True))
    result = run_ablate(cfg.run_dir, settings, progress=cfg.progress and not in_multirun(), force=cfg.force,
                        runtime={"device": cfg.device, "compile": cfg.compile, "torch_threads": cfg.torch_threads})
    if result.pending:
        print(f"ablate: models are still missing; run again without ablate.shard to train the rest and measure "
              f"(python jobs/status.py run_dir={cfg.run_dir}/ablations/{settings.folder_name} lists them)")
        return
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(result.outputs["summary"].round(3).to_string(index=False))
        if result.outputs["paired"] is not None:
            print("\neach method's drop minus linear's, paired over targets:")
            print(result.outputs["paired"].round(3).to_string(index=False))
    print(f"written: {', '.join(map(str, result.written))}")


if __name__ == "__main__":
    launch(main)
