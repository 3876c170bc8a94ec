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
