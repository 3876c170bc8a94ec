"""The lab: experiments over many `assay train` runs and their reports. See docs/lab.md.

Every experiment is one module with an `Experiment` in the one registry (`registry`):
`compare` (one run per reward and seed), `collapse_step`, `zoo`, `sharpen`, `scale`,
`ttt` and `theory`; the command line makes `assay <name>` from each, and a package adds
its own through the `assay.experiments` entry points. They share `experiment` (the one
error, the one preset type, training one run, result files, the report page) and
`workers` (the one job runner). `presets` holds compare's budgets, `summary` (metrics.jsonl
-> summary fields), `collapse` (collapse criteria), `failure` (failure modes), `plots`,
`report` (compare's page) and `display` (its live view); `evaluate` is `assay eval`;
`runs` what sharpen and ttt share; `intervals` and `rank_correlation` the statistics.
"""
