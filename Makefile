# Every target installs what it needs into .venv first (idempotent: redone only when
# pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARDS ?= 8
ARGS ?=

.PHONY: install install-ffcv demo sweep sweep-local status collect fit-slurm test bench-train bench-fit bench-fit-digits bench-scale bench-gpu-linear bench-exhaustive bench-spex

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on CPU-only machines, CUDA on GPU machines.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,spex]'
	touch $@

install: $(STAMP)

# The optional FFCV loader (loader=ffcv). FFCV 1.0.2 compiles a C extension against OpenCV and
# libjpeg-turbo: the Debian packages are installed first when missing (needs apt-get and root).
FFCV_STAMP := $(VENV)/.installed-ffcv
FFCV_DEBS := pkg-config libopencv-dev libturbojpeg0-dev

$(FFCV_STAMP): $(STAMP)
	@missing=$$(for p in $(FFCV_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "FFCV needs the system packages: $$missing (no apt-get here: install them by hand)"; exit 1; fi; \
	  echo "installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(PY) -m pip install -q -e '.[test,ffcv]'
	touch $@

install-ffcv: $(FFCV_STAMP)

DEMO := experiment=demo
RUN_DIR := runs/demo

# The whole pipeline on the embedded default dataset (scikit-learn digits): a sweep of 1,000
# small CNNs on random halves of 1,000 training images grouped into 100 players
# (conf/experiment/demo.yaml), in two local processes; collect; ProxySPEX and linear-datamodel
# fits of the 200 targets; pruning, its retraining evaluation and an HTML report.
# Re-running skips the finished shards.
demo: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,8)' hydra/launcher=joblib $(DEMO) $(ARGS)
	$(PY) jobs/collect.py $(DEMO) $(ARGS)
	$(PY) jobs/fit.py fit=proxyspex $(DEMO) $(ARGS)
	$(PY) jobs/fit.py fit=linear $(DEMO) $(ARGS)
	$(PY) jobs/prune.py $(DEMO) $(ARGS)
	$(PY) jobs/evaluate_pruning.py $(DEMO) $(ARGS)
	$(PY) jobs/report.py $(DEMO) $(ARGS)
	@echo
	@echo "outputs of the demo run in $(RUN_DIR):"
	@echo "  shards/shard-*.parquet       margins of every model (pandas, pyarrow, DuckDB)"
	@echo "  fit/interactions.parquet     main effects, synergy and redundancy per target"
	@echo "  fit/fit_metrics.parquet      held-out R^2 and Spearman (LDS) per target and method"
	@echo "  prune/evaluation.{csv,png}   holdout accuracy of pruned training sets"
	@echo "  report/index.html            all of it as a page; notebooks in analysis/"

# SLURM (docs/slurm.md): the shards as job arrays through hydra/launcher=slurm. Empty settings
# keep conf/hydra/launcher/slurm.yaml's defaults; GPUS=N runs N shards per job, one per GPU.
PARTITION ?=
ACCOUNT ?=
QOS ?=
GPUS ?=
CPUS ?=
MEM ?=
TIME ?=
PARTS ?= 4
SLURM = hydra/launcher=slurm \
	$(if $(PARTITION),hydra.launcher.partition=$(PARTITION)) $(if $(ACCOUNT),hydra.launcher.account=$(ACCOUNT)) \
	$(if $(QOS),hydra.launcher.qos=$(QOS)) $(if $(CPUS),hydra.launcher.cpus_per_task=$(CPUS)) \
	$(if $(MEM),hydra.launcher.mem_gb=$(MEM)) $(if $(TIME),hydra.launcher.timeout_min=$(TIME)) \
	$(if $(GPUS),hydra.launcher.gpus_per_node=$(GPUS) hydra.launcher.tasks_per_node=$(GPUS) device=cuda)

sweep: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' $(SLURM) $(ARGS)

status: install
	$(PY) jobs/status.py $(ARGS)

fit-slurm: install
	$(PY) jobs/fit.py -m 'fit.part=range(0,$(PARTS))' fit.parts=$(PARTS) $(SLURM) $(ARGS)
	$(PY) jobs/fit_merge.py fit.parts=$(PARTS) $(ARGS)

sweep-local: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' hydra/launcher=joblib $(ARGS)

collect: install
	$(PY) jobs/collect.py $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

# its loaders section compares the resident loader with FFCV
bench-train: install-ffcv
	$(PY) benchmarks/bench_train.py $(ARGS)

# ProxySPEX against shapiq's (the `bench` extra) and the linear datamodel on planted games.
bench-fit: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/bench_fit.py $(ARGS)

# Faithfulness against the number of models on a real sweep: the demo's digits players,
# 1,000 masks x 2 seeds (the noise ceiling), then ProxySPEX and the linear datamodel at
# growing budgets.
BENCH_RUN ?= runs/digits-repeats
bench-fit-digits: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,16)' hydra/launcher=joblib $(DEMO) sweep.num_models=2000 sweep.repeats=2 run_dir=$(BENCH_RUN)
	$(PY) benchmarks/bench_fit_digits.py --run $(BENCH_RUN) $(ARGS)

# The fit stage at CIFAR-10 scale on planted sweeps (n up to 50,000 players, 10^5 models):
# memory of the process tree, seconds per target, faithfulness; sweeps under runs/bench-scale.
bench-scale: install
	$(PY) benchmarks/bench_scale.py $(ARGS)

# The linear datamodel on a GPU (fit=linear_gpu) at n = 50,000, m = 100,000, beside the CPU path.
bench-gpu-linear: install
	$(PY) benchmarks/bench_gpu_linear.py $(ARGS)

# Recovery of real retraining games against exact ground truth: every subset of the 10 digit
# classes trained with 2 seeds (about 2,000 models), then ProxySPEX and the linear datamodel at
# growing budgets against the exact references (docs/interactions.md).
EXHAUSTIVE_RUN ?= runs/classes-exhaustive
bench-exhaustive: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,16)' hydra/launcher=joblib experiment=digits_classes_exhaustive run_dir=$(EXHAUSTIVE_RUN)
	$(PY) benchmarks/bench_exhaustive.py --run $(EXHAUSTIVE_RUN) $(ARGS)

# SPEX against ProxySPEX and the linear datamodel at equal numbers of retrained models: planted
# games (hierarchical and not) and the exhaustive digit-classes game, answered from its table
# (make bench-exhaustive trains it). Figures in docs/benchmarks.md.
bench-spex: install
	$(PY) benchmarks/bench_spex.py --run $(EXHAUSTIVE_RUN) $(ARGS)
