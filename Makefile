# envisolation — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CLUSTER_DIR ?= .cluster
PYTEST_ARGS ?=

.PHONY: bench-throttle bench-restart mutate help venv lint fmt unit api chaos dataplane gitops argocd test demo cluster-up cluster-down controlplane golden clean crd bench bench-compare helm kube-router cyclonus-harness system-deps

help:
	@echo "make demo          local cluster + operator + example (Ctrl-C stops it)"
	@echo "make test          quality gates and every test tier (what CI runs)"
	@echo "make unit          pure tests only (seconds)"
	@echo "make chaos         the fault-injection tier only (tests/chaos, ~10 min)"
	@echo "make dataplane     the packet tier only (tests/dataplane; root, kube-router)"
	@echo "make gitops        the Argo CD tier only (tests/gitops; Argo CD built from its Go module)"
	@echo "make lint          ruff check, ruff format --check, mypy --strict"
	@echo "make cluster-up    start the local control plane ($(CLUSTER_DIR)/kubeconfig)"
	@echo "make cluster-down  stop it"
	@echo "make bench [N=1000] benchmarks at scale (bench/README.md)"
	@echo "make bench-throttle [N=240] [ROUNDS=3]  the rollout under APF throttling vs a bare client"
	@echo "make bench-restart [N=10000] [ROUNDS=3]  process start to the first full pass vs a bare LIST"
	@echo "make bench-compare BASE=REV [N=1000] [ROUNDS=2]  the rollout of REV against HEAD"
	@echo "make mutate        mutation testing of the pure layers (hack/mutate; tests/README.md)"
	@echo "make golden        regenerate tests/golden/*/expected.yaml and plan.yaml"
	@echo "make crd           regenerate crds/ from operator/envisolation/spec/schema.py"

$(STAMP): pyproject.toml
	@bash hack/ensure-system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

venv: $(STAMP)

controlplane:
	@hack/build-controlplane >/dev/null

helm:
	@hack/build-helm >/dev/null

kube-router:
	@hack/build-kube-router >/dev/null

cyclonus-harness:
	@hack/build-cyclonus-harness >/dev/null

argocd:
	@hack/build-argocd >/dev/null

# Cheap when nothing is missing; the dataplane tier needs iptables and ipset.
system-deps:
	@bash hack/ensure-system-deps

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/ruff format --check operator tests hack bench
	$(VENV)/bin/mypy --strict operator/envisolation
	$(VENV)/bin/hadolint Dockerfile

fmt: $(STAMP)
	$(VENV)/bin/ruff format operator tests hack bench
	$(VENV)/bin/ruff check --fix operator tests hack bench

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

api: $(STAMP) controlplane helm
	$(PY) -m pytest tests/api $(PYTEST_ARGS)

chaos: $(STAMP) controlplane
	$(PY) -m pytest tests/chaos $(PYTEST_ARGS)

dataplane: $(STAMP) system-deps controlplane kube-router
	$(PY) -m pytest tests/dataplane $(PYTEST_ARGS)

gitops: $(STAMP) system-deps controlplane helm argocd
	$(PY) -m pytest tests/gitops $(PYTEST_ARGS)

# Everything CI checks. pytest exits 5 when it collects no test, which fails make.
test: lint $(STAMP) system-deps controlplane helm kube-router cyclonus-harness argocd
	$(PY) -m pytest tests $(PYTEST_ARGS)

golden: $(STAMP)
	UPDATE_GOLDEN=1 $(PY) -m pytest -q -s tests/unit/test_golden.py

demo: $(STAMP) controlplane
	$(PY) hack/demo

cluster-up: $(STAMP) controlplane
	$(PY) hack/cluster up --dir $(CLUSTER_DIR)

cluster-down:
	@$(PYTHON) hack/cluster down --dir $(CLUSTER_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# Benchmarks (not part of `make test`): every N, or one with `make bench N=1000`.
N ?=
bench: $(STAMP) controlplane
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/scale_bench.py $(N)

# The rollout under API Priority and Fairness throttling against a bare client honouring
# Retry-After, alternating rounds (bench/throttle_bench.py; default N=240, ROUNDS=3).
bench-throttle: $(STAMP) controlplane
	cd bench && ROUNDS=$(if $(filter command line environment,$(origin ROUNDS)),$(ROUNDS),3) \
		../$(PY) throttle_bench.py $(or $(N),240)

# Restart at scale: process start to the first full pass, against a bare LIST of the same
# objects, alternating rounds (bench/restart_bench.py; default N=10000, ROUNDS=3).
bench-restart: $(STAMP) controlplane
	cd bench && ROUNDS=$(if $(filter command line environment,$(origin ROUNDS)),$(ROUNDS),3) \
		../$(PY) restart_bench.py $(or $(N),10000)

# The rollout benchmark of commit BASE against HEAD, alternating rounds (bench/compare.py).
BASE ?= HEAD~1
ROUNDS ?= 2
bench-compare: $(STAMP) controlplane
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/compare.py $(BASE) $(or $(N),1000) $(ROUNDS)

# Mutation testing of the pure layers against the fast tiers (not part of `make test`).
mutate: $(STAMP)
	$(PY) -m pip install -q -e '.[test,mutate]'
	$(PY) hack/mutate

crd: $(STAMP)
	$(PY) hack/gen_crd.py
	$(PY) hack/gen_chart.py
