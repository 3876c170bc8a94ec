# The two commands of the README's quick start. Each sets up what it needs.
.PHONY: demo test lint setup

setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/python scripts/demo.py

test: setup
	@bash scripts/setup-system.sh
	.venv/bin/pytest -n auto

lint: setup
	.venv/bin/ruff check .
