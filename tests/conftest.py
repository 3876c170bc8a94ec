"""Shared fixtures: the real console script, run as a user would (each run a process of its
own, forked from one that has imported torch: tests/forked_cli.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# Before anything imports torch: OpenMP threads that find no work sleep instead of
# spinning. The suite runs two workers, and each may start an `assay` process with two
# threads of its own on a 2-core machine; spinning threads then steal the cores their
# partners need. Measured on 2 cores beside a busy process: SmolLM2 decoding 3 prompts
# took 42 s spinning and 3.7 s passive (idle cores: 2.4 s against 3.2 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import forked_cli  # noqa: E402  (after the line above: its runs take the environment as it is)

ASSAY = forked_cli.ASSAY  # the console script, for the tests that start it themselves


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked `slow` (10 s or more on 2 cores) first in each worker's share
    (`slow_first_in_each_share`), the rest in their order."""
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    items[:] = slow_first_in_each_share(items, workers)


def slow_first_in_each_share(items: list, workers: int) -> list:
    """`items` reordered so that each of `workers` shares starts with its turn of the
    `slow` tests. With `make test`'s `--dist worksteal` each worker is first sent one
    contiguous share of the order (as `_shares` cuts it), and a worker that runs out takes
    the *last* half of the longest queue; so the suite ends as its last short test does,
    and every worker starts with long ones. With all the slow tests at the front, one
    worker ran every one of them in turn and ended 50 s after the other two (a clean-clone
    CI of 2026-12-07, 3 workers); in file order the zoo's 60 s test came last, and one
    worker idled while another ran it."""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    rest = iter([item for item in items if item.get_closest_marker("slow") is None])
    dealt: list[list] = [slow[w::workers] for w in range(workers)]
    for share, size in zip(dealt, _shares(len(items), workers), strict=True):
        share.extend(itertools.islice(rest, max(0, size - len(share))))
    return [item for share in dealt for item in share] + list(rest)


def _shares(n: int, workers: int) -> list[int]:
    """The sizes pytest-xdist's worksteal scheduler first sends to `workers` idle workers."""
    sizes = []
    for i in range(workers):
        sizes.append((n - sum(sizes)) // (workers - i))
    return sizes


def sigint_as_at_a_terminal() -> None:
    """`preexec_fn` for a child that a test will Ctrl-C: SIGINT back to its default. A suite
    started in the background by a non-interactive shell (`make test &`, `nohup ... &`, as
    CI scripts do) runs with SIGINT *ignored*, every child inherits that, and a Python
    child then never sees the Ctrl-C: it runs on to its end (what made the SIGINT tests
    take 40-180 s in such runs and 1-3 s by hand)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def jsonl(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session", autouse=True)
def _remove_fuzz_scratch():
    """The fuzz suite's scratch folder (`assay-fuzz-<pid>`, one per test process) goes
    when the process's tests end, as every test's own `tmp_path` does."""
    yield
    shutil.rmtree(Path(tempfile.gettempdir()) / f"assay-fuzz-{os.getpid()}", ignore_errors=True)


@pytest.fixture
def assay():
    """Run the installed `assay` console script, each run a process of its own forked from
    one that has imported torch (tests/forked_cli.py); returns stdout, stderr and the exit
    code."""

    def run(*args: str, input: str | None = None, timeout: float = 120) -> Run:
        return Run(forked_cli.run(list(args), input=input, timeout=timeout))

    return run


@pytest.fixture
def echo_skill(monkeypatch):
    """A skill registered at run time only, as a user's own would be: `skill="echo"`
    learns to echo `ab`, evaluates to {"echoed": 1.0}; unregistered after the test."""
    from assay.organism import skills

    class Echo:
        name, env_name, alphabet, max_positions = "echo", "echo-env", "ab:", 16
        env_options = {"width": 2}
        train_defaults = {"group_size": 4}

        def examples(self, spec, n, seed):
            return [("ab:", "ab")] * n

        def evaluate(self, spec, model, tokenizer):
            return {"echoed": 1.0}

    skill = Echo()
    monkeypatch.setitem(skills._SKILLS, "echo", skill)
    return skill


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def code_env():
    """A sandboxed `CodeEnv` (3 s per program) on $ASSAY_CODE_BACKEND (default: local);
    skipped, naming what is missing, where that sandbox cannot start."""
    from assay.envs.code import CodeEnv
    from assay.sandbox import Sandbox, SandboxError

    backend = os.environ.get("ASSAY_CODE_BACKEND", "local")
    try:
        Sandbox(backend=backend, workers=1).close()
    except SandboxError as exc:
        pytest.skip(f"{backend} sandbox unavailable: {exc}")
    environment = CodeEnv(timeout=3.0, backend=backend)
    yield environment
    environment.close()


def make_run_folder(folder: Path, metrics: bytes | None, config: bytes | None) -> Path:
    """A run folder as `assay report` reads it: `metrics.jsonl` and `config.yaml` as given
    (None leaves the file out), for the report's hardening and fuzz tests."""
    folder.mkdir(parents=True)
    if metrics is not None:
        (folder / "metrics.jsonl").write_bytes(metrics)
    if config is not None:
        (folder / "config.yaml").write_bytes(config)
    return folder



@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """A randomly initialised tiny Llama in Hugging Face format (2 layers, width 32) with a
    character tokenizer over printable ASCII and newline: a model folder that reads any
    env's prompt and answers with noise, for exercising the trainer's plumbing."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from assay.organism.tokenizer import make_tokenizer

    folder = tmp_path_factory.mktemp("random-model")
    tokenizer = make_tokenizer("".join(chr(c) for c in range(32, 127)) + "\n")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def scripted(*turns: str):
    """A stand-in model for `run_episodes`: reply number t of every episode is turns[t]
    (the last one repeated once the script runs out)."""
    def generate(episodes: list) -> list[str]:
        return [turns[min(e.turns, len(turns) - 1)] for e in episodes]
    return generate


def alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie does not: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def survivors(pids, within: float = 5.0) -> list[int]:
    """The pids still running after `within` seconds (a process killed, or left without
    its parent, ends a moment later)."""
    deadline = time.monotonic() + within
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def workers_at_model_load(monkeypatch, envs_from, model_from) -> list[int]:
    """Watch the order of two things: patches `get_env` on `envs_from` and `load_policy` on
    `model_from` (the modules the code under test calls them through); the list returned
    gets, at each model load, how many verification workers the envs made so far had."""
    envs, counts = [], []
    get_env, load_policy = envs_from.get_env, model_from.load_policy

    def capture(*args, **kwargs):
        envs.append(get_env(*args, **kwargs))
        return envs[-1]

    def watched(*args, **kwargs):
        counts.append(sum(len(p._workers) for env in envs for p in env.__dict__.get("_pools", {}).values()))
        return load_policy(*args, **kwargs)

    monkeypatch.setattr(envs_from, "get_env", capture)
    monkeypatch.setattr(model_from, "load_policy", watched)
    return counts


def hide_module(monkeypatch, name: str) -> None:
    """Make `import name` (and its submodules) fail, as on a machine without the package."""
    import builtins

    real = builtins.__import__

    def without(module, *args, **kwargs):
        if module == name or module.startswith(name + "."):
            raise ImportError(f"No module named {name!r}")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)


def pytest_configure(config):
    # `make test` leaves these out (-m "not browser"); `make browser-test` runs them.
    config.addinivalue_line(
        "markers", "browser: loads a report in headless Chromium (tests/test_browser.py)"
    )
    # `make test` leaves these out too; `make check-priors` runs them.
    config.addinivalue_line(
        "markers", "prior_rebuild: rebuilds a shipped prior from its recipe (minutes)"
    )


def close_to_rounding(mine, theirs) -> bool:
    """Tensors equal but for rounding: within 1e-5 of the larger's largest entry (a sum
    read in another order differs by about 1e-7 of it; a wrong token or position, by far
    more). Per entry no tolerance fits: the tied embedding's gradient entries are sums
    that cancel (1e-2 out of terms of 1e2)."""
    return bool((mine - theirs).abs().max() <= 1e-5 * theirs.abs().max())
