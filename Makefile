# The two commands of the README's quick start. Each sets up what it needs.
.PHONY: demo test browser-test check-priors lint setup mutate

setup:
	@bash scripts/bootstrap.sh

# The demo needs assay alone, not the tests' extras (TRL, Ray, z3, ...): half the set-up.
demo:
	@bash scripts/bootstrap.sh --core
	.venv/bin/python scripts/demo.py

# One test worker more than the cores: while a test waits on a process it started (a
# signal's delay, a sandbox's time limit) the extra worker uses the idle core. On 2 cores
# with an empty model cache, 3 workers took 406 s and 2 took 442 s (docs/development.md).
TEST_WORKERS := $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))

test: setup
	@bash scripts/setup-system.sh --sandbox
	.venv/bin/pytest -n $(TEST_WORKERS) --dist worksteal -m "not browser and not prior_rebuild" --durations=30

# The reports in headless Chromium (tests/test_browser.py), apart from `make test`: installing
# Chromium (1.5 min) would push it past its 10 minutes. CI runs both. See docs/development.md.
browser-test: setup
	@bash scripts/setup-system.sh --browser
	ASSAY_REQUIRE_BROWSER=1 .venv/bin/pytest -m browser tests/test_browser.py

# The shipped priors rebuilt from their recipes, bit for bit (minutes; CI runs it).
# Rebuild and re-ship them with scripts/ship-priors.sh. See docs/training.md, "The prior".
check-priors: setup
	.venv/bin/pytest -m prior_rebuild tests/test_shipped_priors.py

lint: setup
	.venv/bin/ruff check .

# Mutation testing of the core modules (slow: on demand, not in CI). See docs/development.md.
# Sample with e.g. `make mutate MUTATE_ARGS="--max-per-module 20 --module countdown"`.
mutate: setup
	.venv/bin/python scripts/mutate.py $(MUTATE_ARGS)
