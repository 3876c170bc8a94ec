"""Small settings of Hugging Face transformers shared by the organism and training.

A leaf module: it imports nothing of assay, so both `assay.organism` and
`assay.training` can use it without importing each other.
"""

from __future__ import annotations


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and info logs (our bar says enough)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within `timeout` seconds (once
    per process). Where it does not, a hub id is looked up in the local cache only: asking
    the hub would retry for most of a minute, printing each retry, before failing."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    if host not in _REACHABLE:
        try:
            with socket.create_connection((host, endpoint.port or 443), timeout=timeout):
                _REACHABLE[host] = True
        except OSError:
            _REACHABLE[host] = False
    return _REACHABLE[host]
