"""The lab: `assay compare` trains one run per (reward, seed) from the same model and
tasks and `assay report` turns run folders into summary.json, PNG figures and a
self-contained report.html. See docs/lab.md.

Modules: `presets` (budgets), `compare` (the grid), `summary` (metrics.jsonl -> summary
fields), `collapse` (collapse criteria), `failure` (failure modes), `plots`, `report`,
`display` (the live view); the study's six experiments share `experiment` and each has
its own module (`collapse_step`, `zoo`, `sharpen`, `scale`, `ttt`, `theory`), as has
`evaluate` (`assay eval`); `runs` and `workers` run the jobs, `intervals` and
`rank_correlation` the statistics.
"""
