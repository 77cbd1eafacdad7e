# Every target installs what it needs into .venv first (idempotent: redone only when
# pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARDS ?= 8
ARGS ?=

.PHONY: help install install-ffcv demo sweep sweep-local status collect fit-slurm test bench-train bench-fit bench-fit-digits bench-scale bench-gpu-session bench-gpu-linear bench-exhaustive bench-error-rates bench-soum prune-study prune-study-clusters prune-study-examples bench-spex bench-import bench-e2e-scale bench-prune bench-scale-tail duplicates-study bench-trak gpu-wheels ablate ablation-study docs-check test-fast
.DEFAULT_GOAL := help

# The targets with a '## ' description, and the variables most of them take.
help:
	@echo "make TARGET [ARGS='overrides'] (python below means .venv/bin/python: make creates it)"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | awk -F'\t' '{printf "  %-22s%s\n", $$1, $$2}'
	@echo "ARGS: Hydra overrides for every job, e.g. ARGS='run_dir=runs/demo' (a run folder keeps its sweep's settings)"
	@echo "[SLURM]: needs a SLURM cluster; [GPU]: a CUDA device; [root]: installs Debian packages with apt-get"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on CPU-only machines, CUDA on GPU machines.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,spex,trak]'
	touch $@

install: $(STAMP) ## create .venv and install the package (done by every target; about 3 min the first time, 1 s after)

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

install-ffcv: $(FFCV_STAMP) ## the optional FFCV loader (loader=ffcv); [root] apt-installs its system packages (about 3 min the first time)

DEMO := experiment=demo

# The whole pipeline on the embedded default dataset (scikit-learn digits): a sweep of 1,000
# small CNNs on random halves of 1,000 training images grouped into 100 players
# (conf/experiment/demo.yaml), in two local processes; collect; ProxySPEX and linear-datamodel
# fits of the 200 targets; pruning, its retraining evaluation and an HTML report, which ends
# with the list of outputs. Re-running skips the finished shards, and the fits and report whose
# inputs did not change.
demo: install ## the whole pipeline on the bundled digits into runs/demo (4 to 15 min on 2 cores: 4 min 19 s on an idle machine, 14 min 21 s beside other work)
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,8)' hydra/launcher=joblib $(DEMO) $(ARGS)
	$(PY) jobs/collect.py $(DEMO) $(ARGS)
	$(PY) jobs/fit.py fit=proxyspex $(DEMO) $(ARGS)
	$(PY) jobs/fit.py fit=linear $(DEMO) $(ARGS)
	$(PY) jobs/prune.py $(DEMO) $(ARGS)
	$(PY) jobs/evaluate_pruning.py $(DEMO) $(ARGS)
	$(PY) jobs/report.py $(DEMO) $(ARGS)

# Every benchmark runs as a module of the benchmarks package (benchmarks/harness.py: measurement,
# machine, results in runs/benchmarks/<name>.json) with one BLAS/OpenMP thread per process, set
# here, before numpy or LightGBM loads (each benchmark's harness.pin_threads() checks it at its start).
BENCH_ENV := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

# The figures docs/pruning.md gives for the demo, checked against what the code gives today:
# the demo (skipped where runs/demo is finished and current), then benchmarks/demo_figures.py
# compares every figures block of the page with the run and prints a diff where one drifted.
docs-check: demo ## the docs' demo figures against a run of the demo (the demo's time, then 10 s); CI runs it
	$(PY) -m benchmarks.demo_figures --run runs/demo --check

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

sweep: install ## [SLURM] the sweep as job arrays: SHARDS=, PARTITION=, GPUS=, TIME=, ... (docs/slurm.md; the demo's 8 shards: minutes, queue aside)
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' $(SLURM) $(ARGS)

status: install ## progress of a sweep and the command that trains what is missing: ARGS=run_dir=... (seconds)
	$(PY) jobs/status.py $(ARGS)

fit-slurm: install ## [SLURM] the fit as PARTS jobs over target ranges, then merged (the demo: 1 min; 10,000 CIFAR targets: about 1 h on 100 tasks)
	$(PY) jobs/fit.py -m 'fit.part=range(0,$(PARTS))' fit.parts=$(PARTS) $(SLURM) $(ARGS)
	$(PY) jobs/fit_merge.py fit.parts=$(PARTS) $(ARGS)

sweep-local: install ## the sweep's SHARDS shards over local processes (one per core; the demo's 1,000 models: 3 to 6 min on 2 cores)
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' hydra/launcher=joblib $(ARGS)

collect: install ## validate the shards, report missing models, build the fit-ready layout (the demo: 3 s; 10^5 CIFAR models: about 2 min)
	$(PY) jobs/collect.py $(ARGS)

test: install ## the test suite, about 22 min on 2 cores (22 min 8 s measured in CI, 578 tests; ARGS=-k NAME for some tests)
	$(PY) -m pytest -q --durations=15 $(ARGS)

# The unit tests: no job, process, notebook or compilation (those carry the slow mark, which
# tests/test_architecture.py checks), for the edit-test loop; make test stays CI's command.
test-fast: install ## the unit tests only (-m 'not slow'): under 2 min on 2 cores (1 min 58 s measured, 483 tests)
	$(PY) -m pytest -q -m "not slow" --durations=15 $(ARGS)

# its loaders section compares the resident loader with FFCV
# A GPU machine lent to a session (docs/benchmarks.md, "GPU") has torch, numpy, pandas, pyarrow and
# scikit-learn but not the sweep's configuration and locking packages, and no network: their
# pure-Python wheels, at this venv's versions, go with the working tree (run's carry=[".gpu-wheels"]).
gpu-wheels: install ## wheels of hydra-core, omegaconf, antlr4, flufl.lock, atpublic into .gpu-wheels/ for a GPU machine (seconds)
	$(PY) -m pip freeze | grep -iE '^(hydra-core|omegaconf|antlr4-python3-runtime|flufl.lock|atpublic)==' > .gpu-wheels.txt
	$(PY) -m pip wheel --no-deps -q -w .gpu-wheels -r .gpu-wheels.txt && rm .gpu-wheels.txt

bench-train: install-ffcv ## [root: FFCV's packages] training throughput, one model vs K per pass (tens of minutes on 2 cores; on a GPU: make bench-gpu-session)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_train $(ARGS)

# ProxySPEX against shapiq's (the `bench` extra) and the linear datamodel on planted games.
bench-fit: install ## ProxySPEX vs shapiq and the linear datamodel on planted games (about 15 min)
	$(PY) -m pip install -q -e '.[bench]'
	$(BENCH_ENV) $(PY) -m benchmarks.bench_fit $(ARGS)

# Faithfulness against the number of models on a real sweep: the demo's digits players,
# 1,000 masks x 2 seeds (the noise ceiling), then ProxySPEX and the linear datamodel at
# growing budgets.
BENCH_RUN ?= runs/digits-repeats
bench-fit-digits: install ## faithfulness against the number of models on digits (a 2,000-model sweep: ~30 min)
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,16)' hydra/launcher=joblib $(DEMO) sweep.num_models=2000 sweep.repeats=2 run_dir=$(BENCH_RUN)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_fit_digits --run $(BENCH_RUN) $(ARGS)

# The fit stage at CIFAR-10 scale on planted sweeps (n up to 50,000 players, 10^5 models):
# memory of the process tree, seconds per target, faithfulness; sweeps under runs/bench-scale.
bench-scale: install ## the fit at CIFAR-10 scale on planted sweeps (hours on 2 cores; --parts runs pieces)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_scale $(ARGS)

# The linear datamodel on a GPU (fit=linear_gpu) at n = 50,000, m = 100,000, beside the CPU path.
# Issue 20 in one call on a GPU (docs/benchmarks.md, "GPU"): ResNet-9 and small-CNN throughput at
# K = 1, 4, 8, 32 in float32 and bfloat16, a sweep through the store, one-at-a-time against
# stacked margins, a profile; written to $OUT/gpu_session.md (ARGS="--out FILE" elsewhere).
bench-gpu-session: install ## [GPU] training throughput, store, equality and profile on a GPU in one call (~6 min)
	$(BENCH_ENV) $(PY) -m benchmarks.gpu_session $(ARGS)

bench-gpu-linear: install ## [GPU] the linear datamodel on a GPU (fit=linear_gpu; minutes, most of it writing the planted sweep)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_gpu_linear $(ARGS)

# Recovery of real retraining games against exact ground truth: every subset of the 10 digit
# classes trained with 2 seeds (about 2,000 models), then ProxySPEX and the linear datamodel at
# growing budgets against the exact references (docs/interactions.md).
EXHAUSTIVE_RUN ?= runs/classes-exhaustive
bench-error-rates: install ## familywise against false-discovery control of ProxySPEX's tests on planted and SOUM games (about 8 min)
	$(BENCH_ENV) $(PY) -m benchmarks.error_rates $(ARGS)

# ProxySPEX (tested terms only, and untested="cv") against shapiq's ProxySPEX and the linear
# datamodel on 42 SOUM games, the masks shapiq sampled given to all (docs/benchmarks.md).
bench-soum: install ## ProxySPEX vs shapiq and the linear datamodel on 42 sums of unanimity games (about 15 min)
	$(PY) -m pip install -q -e '.[bench]'
	$(BENCH_ENV) $(PY) -m benchmarks.soum_games $(ARGS)

bench-exhaustive: install ## recovery against exact ground truth (all subsets of 10 classes: ~2,000 models: about 15 min on 2 cores)
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,16)' hydra/launcher=joblib experiment=digits_classes_exhaustive run_dir=$(EXHAUSTIVE_RUN)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_exhaustive --run $(EXHAUSTIVE_RUN) $(ARGS)

# The pruning study (docs/pruning.md): for each of two runs, the demo's 100 cluster players and
# 200 single-example players, a sweep over the alpha grid 0.2..0.9, ProxySPEX and linear fits at
# every alpha (matched surrogates), keep-sets of every method at fractions 0.9..0.2 and their
# retraining with 10 seeds (and draws). The sweeps are most of it: about 1.5 hours on 2 cores.
STUDY_ALPHAS := 0.2 0.3 0.5 0.7 0.9
define prune_study
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(2))' hydra/launcher=joblib experiment=$(1) $(ARGS)
	$(PY) jobs/collect.py experiment=$(1) $(ARGS)
	for a in $(STUDY_ALPHAS); do for fit in proxyspex linear; do \
	  $(PY) jobs/fit.py fit=$$fit fit.alpha=$$a experiment=$(1) $(ARGS) || exit 1; done; done
	$(PY) jobs/prune.py experiment=$(1) $(ARGS)
	$(PY) jobs/evaluate_pruning.py experiment=$(1) $(ARGS)
endef
prune-study-clusters: install ## the pruning study's run on the demo's 100 cluster players (about 1 h of the study's 1.5 h)
	$(call prune_study,prune_study_clusters,24)
prune-study-examples: install ## the pruning study's run on 200 single-example players (about 30 min)
	$(call prune_study,prune_study_examples,20)
prune-study: prune-study-clusters prune-study-examples ## the pruning study (docs/pruning.md), both runs (~1.5 h on 2 cores)

# SPEX against ProxySPEX and the linear datamodel at equal numbers of retrained models: planted
# games (hierarchical and not) and the exhaustive digit-classes game, answered from its table
# (make bench-exhaustive trains it). Figures in docs/benchmarks.md.
bench-spex: install ## SPEX vs ProxySPEX vs linear at equal models (about 7 min; needs bench-exhaustive's run)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_spex --run $(EXHAUSTIVE_RUN) $(ARGS)

# The import of the datamodels release format (docs/cifar10.md): M = 100,000 x n = 50,000 masks
# and T = 1,000 margins written by the planted release generator (5.2 GB under runs/bench-import,
# reused), the import against reading the two files once, and its peak memory.
bench-import: install ## import of a 100,000 x 50,000 release pair: time vs one read, peak memory (~5 min, 6 GB disk)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_import $(ARGS)

# CIFAR-10's scale end to end (n = 50,000 players, T = 10,000 targets, 2,000 models): planted games
# in the datamodels release's format, import, genuine fits of 10 targets per method (the other
# targets' fit tables from the planted truth), prune (interactions, linear, random, stratified at
# 5 fractions), curate, report and the three notebooks: each stage's wall time and peak memory.
bench-e2e-scale: install ## release -> import -> fit -> prune -> curate -> report at n = 50,000, T = 10,000 (about 10 min on 2 cores, 0.5 GB of disk)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_e2e_scale $(ARGS)

# Keep-sets at CIFAR-10 scale (n = 50,000 players): the sparse greedy against today's dense one
# (tests/prune_reference.py) at T = 10 and 1,000, and T = 10,000 at 5 fractions, both
# surrogate methods. Figures in docs/benchmarks.md.
bench-prune: install ## pruning at n = 50,000 x T = 10,000 vs the dense greedy (about 30 min on 2 cores)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_prune $(ARGS)

# The calibration of ProxySPEX's interaction tests as models grow (issue 22, item 5): a dense tail
# of faint mains on every player, 2 seeds per mask, m = 20,000 and 100,000 (docs/benchmarks.md).
bench-scale-tail: install ## pairs found beside the oracle, and false pairs per target, of ProxySPEX (familywise, FDR, relaxed refit) on a dense-tail game of synergistic and redundant pairs at 20,000 and 100,000 models (about 30 min)
	$(BENCH_ENV) $(PY) -m benchmarks.bench_scale --parts tail $(ARGS)

# The duplicates experiment (issue 19; docs/duplicates.md): the demo's 100 cluster players of
# which 10 get a noisy twin (conf/experiment/duplicates.yaml), 1,000 models; the fits, the
# duplicate pairs and their ranked groups (runs/duplicates/duplicates/), TRAK, pruning at
# 0.95..0.5 with every method retrained, the report, the detection of the known twins
# (runs/duplicates/twins.csv) against three other detectors, the twin pairs each pruner loses,
# and what removing a player costs the pruning objective.
DUPS := experiment=duplicates
duplicates-study: install ## twin players on the digits: sweep, fits, duplicates, TRAK, pruning, report, detection (~6 min)
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,8)' hydra/launcher=joblib $(DUPS) $(ARGS)
	$(PY) jobs/collect.py $(DUPS) $(ARGS)
	$(PY) jobs/fit.py fit=proxyspex $(DUPS) $(ARGS)
	$(PY) jobs/fit.py fit=linear $(DUPS) $(ARGS)
	$(PY) jobs/duplicates.py $(DUPS) $(ARGS)
	$(PY) jobs/trak.py $(DUPS) $(ARGS)
	$(PY) jobs/prune.py $(DUPS) $(ARGS)
	$(PY) jobs/evaluate_pruning.py $(DUPS) $(ARGS)
	$(PY) jobs/report.py $(DUPS) $(ARGS)
	$(BENCH_ENV) $(PY) -m benchmarks.duplicates_detection --run runs/duplicates
	$(BENCH_ENV) $(PY) -m benchmarks.duplicates_pruning --run runs/duplicates
	$(BENCH_ENV) $(PY) -m benchmarks.twins_removal_costs --run runs/duplicates

# Retraining checks of a fit (docs/ablation.md): pairs as 2x2 factorials on random backgrounds,
# removal sets with and without, or (no training) the pairs on the fit's held-out models. Each
# prints what it trains and the projected time first, and resumes where it stopped.
ablate: install ## check a run's fit by retraining: ARGS='run_dir=runs/demo ablate=pairs|removal|heldout' (demo pairs: ~10 min)
	$(PY) jobs/ablate.py $(ARGS)

# The study of docs/ablation.md, every figure from a clean run folder: the demo run (held-out
# pairs, the top 20 pairs and controls, 40 pairs sampled by rank, removal from the whole set and
# from backgrounds at alpha), the exhaustive class game (measured against the exact double
# differences of all 1,024 subsets) and the twins run of the duplicates experiment.
ABLATION_EXHAUSTIVE := experiment=digits_classes_exhaustive run_dir=$(EXHAUSTIVE_RUN)
ablation-study: demo ## the retraining checks of docs/ablation.md (~1.5 h on 2 cores after the demo)
	$(PY) jobs/ablate.py $(DEMO) ablate=heldout
	$(PY) jobs/ablate.py $(DEMO) ablate=pairs
	$(PY) jobs/ablate.py $(DEMO) ablate=removal ablate.background=full
	$(PY) jobs/ablate.py $(DEMO) ablate=pairs ablate.name=pairs-by-rank ablate.selection=stratified ablate.pairs=40 ablate.controls=false
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,16)' hydra/launcher=joblib $(ABLATION_EXHAUSTIVE)
	$(PY) jobs/fit.py fit=proxyspex $(ABLATION_EXHAUSTIVE)
	$(PY) jobs/ablate.py $(ABLATION_EXHAUSTIVE) ablate=pairs
	$(PY) jobs/ablate.py $(ABLATION_EXHAUSTIVE) ablate=heldout
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,8)' hydra/launcher=joblib $(DUPS)
	$(PY) jobs/fit.py fit=proxyspex $(DUPS)
	$(PY) jobs/fit.py fit=linear $(DUPS)
	$(PY) jobs/ablate.py $(DUPS) ablate=pairs ablate.name=twins ablate.selection=twins ablate.controls=false ablate.budget=1280
	$(PY) jobs/ablate.py $(DUPS) ablate=removal ablate.background=full ablate.targets=twins ablate.backgrounds=8
	$(PY) jobs/ablate.py $(DEMO) ablate=removal ablate.background=alpha
	$(BENCH_ENV) $(PY) -m benchmarks.ablation_study runs/demo $(EXHAUSTIVE_RUN) runs/duplicates

# TRAK as the cheap-attribution anchor (issue 19, item 5; docs/benchmarks.md): the demo's settings
# swept into runs/trak-lds (1,000 models), then TRAK from K of its models against the linear
# datamodel and ProxySPEX fitted on m of them, all judged on the fit stage's held-out models.
bench-trak: install ## TRAK vs the linear datamodel and ProxySPEX at equal training compute (LDS over models; about 12 min on 2 cores: sweep 8, benchmark 4)
	$(PY) jobs/sweep.py experiment=demo run_dir=runs/trak-lds progress=false
	$(BENCH_ENV) $(PY) -m benchmarks.trak_lds --run runs/trak-lds $(ARGS)
