"""The analysis views as a static HTML page with PNG figures: <run_dir>/report/index.html.

    python jobs/report.py [run_dir=...]
"""

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from datamodels.analysis import RunView, write_report
from datamodels.cli import job


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@job()
def main(cfg: DictConfig) -> None:
    run_dir = Path(to_absolute_path(cfg.run_dir))
    page = write_report(RunView.open(run_dir), run_dir / "report")
    print(f"report: {page}")


if __name__ == "__main__":
    main()
