# mood: the two commands a newcomer needs are `make book` and `make test`.
# Each creates the virtual environment and fetches the offline data when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= cpu
export MOOD_PROFILE := $(PROFILE)

.PHONY: help setup data test test-fast book edition notebooks clean clean-results bench budget zoo

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -c .ci/constraints.txt -e .
	touch $(STAMP)

setup: $(STAMP) data  ## virtual environment + offline data

data:  ## Fashion-MNIST from Debian (apt-get), when it is not on disk yet
	@bash .ci/install-data

test: setup  ## the whole test suite (what CI runs)
	$(PY) -m pytest -q --durations=15

test-fast: setup  ## tests without the slow and book markers
	$(PY) -m pytest -q -m "not slow and not book"

notebooks: setup  ## execute every notebook with papermill at PROFILE (smoke|cpu|gpu)
	$(PY) -m mood book run --profile $(PROFILE)

book: setup  ## execute the notebooks, then build the HTML book (book/_build/html)
	$(PY) -m mood book build --profile $(PROFILE)

edition: $(STAMP)  ## render the PROFILE record (results/PROFILE: its executed chapters) into HTML, executing nothing
	$(PY) -m mood book render --edition $(PROFILE)

zoo: setup  ## train the zoo's missing entries (hours on a CPU: background, lowest priority, each committed when done)
	nice -n 19 $(PY) -m mood zoo train --commit

bench: setup  ## benchmarks (not tests): Mahalanobis vs scikit-learn
	$(PY) benchmarks/mahalanobis_speed.py

budget: setup  ## the last book run's chapter wall times against the PROFILE's time budget
	$(PY) benchmarks/book_budget.py --profile $(PROFILE)

# Never a tracked file: results/cpu and results/gpu hold the committed results of record.
clean:  ## remove what runs leave and git ignores: the artifact cache (MOOD_ARTIFACTS, else artifacts/), executed notebooks, the built book, untracked files under results/
	@set -euo pipefail; \
	for p in "$${MOOD_ARTIFACTS:-artifacts}" _build book/_build book/executed book/chapters; do \
	  [ -e "$$p" ] || continue; \
	  case "$$(pwd -P)/" in "$$(realpath -m -- "$$p")"/*) echo "clean: $$p holds this checkout: left alone" >&2; continue;; esac; \
	  if [ -n "$$(git ls-files -- "$$p" 2>/dev/null | head -n 1)" ]; then echo "clean: $$p holds tracked files: left alone" >&2; continue; fi; \
	  rm -rf -- "$$p"; echo "removed $$p"; \
	done; \
	if [ ! -d results ]; then exit 0; fi; \
	if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then echo "clean: not a git checkout: results/ left alone" >&2; exit 0; fi; \
	git ls-files --others -z -- results | while IFS= read -r -d '' f; do rm -f -- "$$f"; echo "removed $$f"; done; \
	find results -mindepth 1 -type d -empty -print -delete | sed 's/^/removed /'

clean-results: clean  ## the same as clean (its old name)
