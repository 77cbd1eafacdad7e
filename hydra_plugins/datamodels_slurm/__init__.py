"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, extended for long sweeps.

Found by Hydra's plugin discovery (the ``hydra_plugins`` namespace package); configured by
``conf/hydra/launcher/slurm.yaml``. See docs/slurm.md.
"""
