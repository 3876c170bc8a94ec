"""Run untrusted Python: isolated, resource-limited, hundreds of runs per second.

`Sandbox(backend="local")` jails warm fork servers with bubblewrap;
`Sandbox(backend="docker")` runs the same fork servers in locked-down containers.
See docs/sandbox.md for the threat model and what holds. This package imports
nothing else of assay.
"""

from assay.sandbox.execution import STATUSES, Execution, Limits, SandboxError
from assay.sandbox.sandbox import BACKENDS, Sandbox

__all__ = ["BACKENDS", "STATUSES", "Execution", "Limits", "Sandbox", "SandboxError"]
