# The two commands of the README's quick start. Each sets up what it needs.
.PHONY: demo test lint setup mutate

setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup
	@bash scripts/setup-system.sh
	.venv/bin/pytest -n auto

lint: setup
	.venv/bin/ruff check .

# Mutation testing of the core modules (slow: on demand, not in CI). See docs/development.md.
# Sample with e.g. `make mutate MUTATE_ARGS="--max-per-module 20 --module countdown"`.
mutate: setup
	.venv/bin/python scripts/mutate.py $(MUTATE_ARGS)
