"""Interaction-aware data attribution by retraining.

Stages (each a plain function or class here, each a Hydra job under ``jobs/``): a sweep trains
models on masked subsets (:mod:`datamodels.sweep`) and logs margins to parquet shards
(:mod:`datamodels.store`); the interaction engine fits sparse surrogates of
``subset -> margin`` (:mod:`datamodels.interactions`); retraining checks test what a fit claims
(:mod:`datamodels.ablation`).

Every stage reads and writes one run folder: :mod:`datamodels.run_folder` names its files,
:mod:`datamodels.run_identity` says which sweep they belong to (the config hash, ``run.json``'s
keys), and :mod:`datamodels.claims` which process trains a shard now.
"""

__version__ = "0.1.0"
