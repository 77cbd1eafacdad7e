"""Import models trained elsewhere (the datamodels release, or a datamodels store) as a run folder.

    python jobs/import_sweep.py run_dir=runs/cifar10-release dataset=none \
        source.masks=train_masks_50pct.npy source.margins=test_margins_50pct.npy source.rows=0:300000
    python jobs/import_sweep.py run_dir=runs/mine dataset=cifar10 source.store=/path/to/store

dataset= must be given: cifar10 links the run to the genuine archive's images (n = 50,000 train,
10,000 test columns), none imports without images. Re-running a killed import finishes its
missing shards. Then collect, fit, prune and report it like a sweep (datamodels.sweep.importing).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from datamodels.cli import chosen_on_command_line, job, launch
from datamodels.errors import UserError
from datamodels.sweep.importing import ImportSettings, run_import


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job(creates_run=True, derives=True)
def main(cfg: DictConfig) -> None:
    if not chosen_on_command_line("dataset"):
        raise UserError("say which images the models were trained on: dataset=cifar10 (the genuine archive) "
                        "or dataset=none (no images)")
    config = OmegaConf.to_container(cfg, resolve=True)
    settings = ImportSettings.from_config(config["source"])
    result = run_import(cfg.run_dir, settings, config=config, progress=cfg.progress, force=cfg.force, announce=print)
    plan = result.outputs["plan"]
    print(f"{cfg.run_dir}: {len(plan.rows)} models (n={plan.meta['n']}, T={plan.meta['T']}, alpha={plan.alpha}) "
          f"imported from the {plan.source.kind} layout: {len(result.written)} shards written, "
          f"{result.outputs['present']} already present; "
          f"next: python jobs/collect.py run_dir={cfg.run_dir}")


if __name__ == "__main__":
    launch(main)
