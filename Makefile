# The two set-up commands of the README: each creates .venv, installs torch, builds, then runs.
PY := .venv/bin/python

.PHONY: setup demo test check bench sanitize
setup:
	bash scripts/setup_env.sh

demo: setup
	$(PY) -m torch_convpool demo

test: setup
	$(PY) -m pytest -q tests

check: setup
	$(PY) -m torch_convpool check

bench: setup
	$(PY) benchmarks/run.py

# ASan + UBSan build in .venv-sanitize, then the suite (see scripts/sanitize.sh).
sanitize:
	bash scripts/sanitize.sh
