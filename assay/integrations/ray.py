"""`assay verify --ray`: an env's verification spread over a Ray cluster.

One actor per node (Ray's SPREAD placement), each holding the env, warm, and verifying
chunks of (task, completion) pairs with its own local workers (for the code env: its
bubblewrap sandbox). Results come back in input order, with the same statuses as local
verification; a chunk whose actor died past Ray's retries comes back as `error` verdicts
naming the loss, never dropped. See `assay.sandbox.ray_pool` and docs/sandbox.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from assay.envs import Task, get_env
from assay.sandbox.ray_pool import RayPool, connect
from assay.verifiers import Verdict

#: pairs per chunk: each node verifies a chunk with all of its cores
CHUNK = 64


class EnvVerifier:
    """The actor's worker: one env, kept for the pool's life."""

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.env = get_env(name, **options)
        self.env.check_available()  # a node without z3 or Lean says so once, up front

    def work(self, pairs: list[tuple[Task, str]]) -> list[Verdict]:
        return self.env.verify_many(pairs)

    def close(self) -> None:
        self.env.close()


def verify_pool(name: str, options: dict[str, Any], address: str | None) -> RayPool:
    """A pool of one env verifier per alive node of the cluster."""
    ray = connect(address)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return RayPool(functools.partial(EnvVerifier, name, options), slots=max(1, len(nodes)),
                   address=address, cpus_per_slot=0.001, chunk=CHUNK)


def verify_on_ray(
    name: str,
    options: dict[str, Any],
    pairs: list[tuple[Task, str]],
    *,
    address: str | None = None,
    on_result: Callable[[int, Verdict], None] | None = None,
) -> list[Verdict]:
    """Verdicts of `pairs` in order, computed on the cluster."""
    pool = verify_pool(name, options, address)
    try:
        return pool.run(pairs, on_lost=lambda _pair, detail: Verdict.error(detail),
                        on_result=on_result)
    finally:
        pool.close()
