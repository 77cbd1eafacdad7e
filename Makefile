# Every target installs what it needs into .venv first (idempotent: redone only when
# pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARDS ?= 8
ARGS ?=

.PHONY: install install-ffcv demo sweep-local collect test bench-train

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on CPU-only machines, CUDA on GPU machines.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
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

RUN_DIR ?= runs/digits-small_cnn-bernoulli

# The whole pipeline on the embedded default dataset (scikit-learn digits): a sweep of 1,000
# small CNNs on random halves of 1,000 training images (parallel local processes), collect,
# ProxySPEX and linear-datamodel fits of 200 targets, pruning, its retraining evaluation and
# an HTML report. Re-running skips the finished shards.
demo: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' hydra/launcher=joblib $(ARGS)
	$(PY) jobs/collect.py $(ARGS)
	$(PY) jobs/fit.py fit=proxyspex $(ARGS)
	$(PY) jobs/fit.py fit=linear $(ARGS)
	$(PY) jobs/prune.py $(ARGS)
	$(PY) jobs/evaluate_pruning.py $(ARGS)
	$(PY) jobs/report.py $(ARGS)
	@echo
	@echo "outputs of the demo run in $(RUN_DIR):"
	@echo "  shards/shard-*.parquet       margins of every model (pandas, pyarrow, DuckDB)"
	@echo "  fit/interactions.parquet     main effects, synergy and redundancy per target"
	@echo "  fit/fit_metrics.parquet      held-out R^2 and Spearman (LDS) per target and method"
	@echo "  prune/evaluation.{csv,png}   holdout accuracy of pruned training sets"
	@echo "  report/index.html            all of it as a page; notebooks in analysis/"

sweep-local: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' hydra/launcher=joblib $(ARGS)

collect: install
	$(PY) jobs/collect.py $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

# its loaders section compares the resident loader with FFCV
bench-train: install-ffcv
	$(PY) benchmarks/bench_train.py $(ARGS)
