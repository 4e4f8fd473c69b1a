# `make help` lists every target. Each target is one line calling `sst …` (or a script in scripts/).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV ?= .venv
SST := $(VENV)/bin/sst
# The real SST data when a folder holds it (../shared/data beside the clone); without it the PTB
# presets download the official release once (docs/data.md)
SST_DATA ?= $(wildcard $(abspath ../shared/data))
export SST_DATA
# Determinism variables that must be set before Python/CUDA start (also in the image ENV)
export PYTHONHASHSEED := 0
export TOKENIZERS_PARALLELISM := false
export CUBLAS_WORKSPACE_CONFIG := :4096:8
# SST_CPU_ISA=portable: vendor-independent CPU kernels (measured on AMD so far); avx2: Intel CPUs (docs/replay.md)
export SST_CPU_ISA

.PHONY: help setup lock lock-check image image-agent sweep report test test-all lint data split split-ptb demo train bench bench-quality bench-split doctor image-cpu test-image clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.lock.sha256 ## create .venv from environment.lock + environment-dev.lock, hashes required (no-op when unchanged)

$(VENV)/.lock.sha256: environment.lock environment-dev.lock pyproject.toml scripts/setup-venv.sh
	@scripts/setup-venv.sh "$(PYTHON)" "$(VENV)"

lock: ## regenerate environment.lock (CPU), environment-gpu.lock (CUDA) and environment-dev.lock from pyproject.toml
	@scripts/lock.sh "$(PYTHON)"

lock-check: ## fail when a lock is stale versus pyproject.toml
	@scripts/lock.sh --check "$(PYTHON)"

test: setup ## the fast test tier (CPU only; no slow, docker or gpu tests)
	$(VENV)/bin/pytest -q

test-all: setup ## every test tier this machine can run, slow included
	$(VENV)/bin/pytest -q -m "not docker and not gpu"

lint: setup ## ruff (lint + format check), mypy on sst/, and the largest modules (a review signal)
	$(VENV)/bin/ruff check sst tests colab && $(VENV)/bin/ruff format --check sst tests colab && $(VENV)/bin/mypy
	@echo "largest modules (lines; a signal for review, not a limit):" && find sst -name '*.py' -exec wc -l {} + | sort -rn | sed -n '2,11p'

doctor: setup ## environment fingerprint; fails on drift from environment.lock
	$(SST) doctor

data: setup ## fetch + parse the Kaggle phrase TSV and print what it holds
	$(SST) data --config configs/kaggle.yaml

split: setup ## Kaggle TSV → Wasserstein-searched, tree-preserving split in splits/kaggle
	$(SST) split --config configs/kaggle.yaml

split-ptb: setup ## SST PTB trees → canonical train/dev/test split in splits/ptb
	$(SST) split --config configs/ptb.yaml

demo: setup ## the main job: SST trees → canonical split → fine-tune the embedded MiniLM → report
	$(SST) split --config configs/demo.yaml $(ARGS) && $(SST) train --config configs/demo.yaml $(ARGS)

train: setup ## fine-tune with CONFIG (default configs/demo.yaml) and ARGS (key=value overrides)
	$(SST) train --config $(or $(CONFIG),configs/demo.yaml) $(ARGS)

# make sweep: models.local.txt here; with QUEUE=<name>, models.txt cloned onto ClearML agents
MODELS ?= $(if $(QUEUE),models.txt,models.local.txt)
SWEEP_CONFIG ?= $(if $(QUEUE),configs/demo.yaml,configs/sweep-local.yaml)
sweep: setup ## train every line of MODELS (here, or QUEUE=name on ClearML), then the leaderboard
	$(SST) split --config $(SWEEP_CONFIG) >/dev/null
	$(SST) sweep --config $(SWEEP_CONFIG) --models $(MODELS) $(if $(QUEUE),--queue $(QUEUE),--local) $(ARGS)

report: setup ## leaderboard of every run in runs/ (BY=balanced|macro_f1|phrase.qwk|...)
	$(SST) report runs --by $(or $(BY),balanced) --out reports/latest

bench: setup ## training/inference samples/s vs HF Trainer; the cost of portable kernels (BENCHMARKS.md)
	$(SST) bench train --config configs/demo.yaml --phrases 3000 --out BENCHMARKS.md
	$(SST) bench profile --config configs/demo.yaml --phrases 3000 --out BENCHMARKS.md
	$(SST) bench isa --config configs/demo.yaml --phrases 1500 --out BENCHMARKS.md

bench-quality: setup ## test quality of CONFIG (default full.yaml) vs the plain HF Trainer script, 3 seeds (hours; ARGS: --arm "...")
	$(SST) split --config $(or $(CONFIG),configs/full.yaml) >/dev/null
	$(SST) bench quality --config $(or $(CONFIG),configs/full.yaml) train.seeds=0,1,2 tracking.enabled=false --out BENCHMARKS.md $(ARGS)

bench-split: setup ## seed search: 10,000 seeds vectorised vs the per-seed scipy loop
	$(SST) bench split --config configs/kaggle.yaml --seeds 10000 --peer-seeds 300 --out BENCHMARKS.md

image: ## build the GPU image sst:gpu (CUDA base, environment-gpu.lock; host needs driver >= 580)
	scripts/image.sh app sst:gpu environment-gpu.lock

image-cpu: ## build the CPU image sst:cpu from environment.lock (engine and base made if missing)
	scripts/image.sh app sst:cpu

image-agent: ## build sst:agent: a clearml-agent daemon with a docker client (Colab docker mode)
	scripts/image.sh agent sst:agent

test-image: ## CI's docker stage: the fast tier and a short training run inside the CPU image
	scripts/ci-docker.sh

clean: ## remove caches (never data, splits or runs)
	rm -rf .pytest_cache .ruff_cache .mypy_cache
