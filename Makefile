# Every target installs what it needs into .venv first (idempotent: redone only when
# pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARDS ?= 8
ARGS ?=

.PHONY: install demo sweep-local collect test bench-train

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on CPU-only machines, CUDA on GPU machines.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

# The main job on the embedded default dataset (scikit-learn digits): a sweep of 1,000 small
# CNNs on random halves of 1,000 training images, in parallel local processes, then collect.
demo: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' hydra/launcher=joblib $(ARGS)
	$(PY) jobs/collect.py $(ARGS)

sweep-local: install
	$(PY) jobs/sweep.py -m 'sweep.shard=range(0,$(SHARDS))' hydra/launcher=joblib $(ARGS)

collect: install
	$(PY) jobs/collect.py $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

bench-train: install
	$(PY) benchmarks/bench_train.py $(ARGS)
