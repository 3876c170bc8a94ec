"""Trusting a reward: re-scoring a run's stored rollouts with other rewards (`assay rescore`)
and auditing an environment's verifier against known reward hacks (`assay audit`).

Both sit on top of `training` (the stored rollouts, the diagnostics' definitions) and
`envs`; only `cli` imports them. See docs/trust.md.
"""
