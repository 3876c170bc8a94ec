"""assay.adamw against torch.optim as the oracle: the same weights bit for bit, step for
step, state dicts that restore into each other, and no `torch._dynamo` import (the reason
the module exists)."""

from __future__ import annotations

import io
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from assay.adamw import AdamW, LambdaSchedule


def _factor(step: int) -> float:  # the trainer's shape: warm-up, then a cosine
    return (step + 1) / 3 if step < 3 else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - 3) / 8)))


def _params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    return [torch.randn(s, generator=g).requires_grad_() for s in shapes]


def _grads(params: list[torch.Tensor], step: int) -> None:
    """Seeded gradients; parameter 2 has none on odd steps (it keeps its moments then)."""
    g = torch.Generator().manual_seed(1000 + step)
    for i, p in enumerate(params):
        p.grad = None if (i == 2 and step % 2) else torch.randn(p.shape, generator=g) * 10 ** (i - 2)


def _run(opt, sched, params, steps: range) -> list[float]:
    rates = []
    for step in steps:
        opt.zero_grad(set_to_none=True)
        _grads(params, step)
        opt.step()
        rates.append(sched.get_last_lr()[0])
        sched.step()
    return rates


def _pair(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    ours_p, theirs_p = _params(), _params()
    ours = AdamW(ours_p, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    theirs = torch.optim.AdamW(theirs_p, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return (ours_p, ours, LambdaSchedule(ours, _factor)), (
        theirs_p,
        theirs,
        torch.optim.lr_scheduler.LambdaLR(theirs, _factor),
    )


def _assert_same(ours_p, ours, theirs_p, theirs) -> None:
    for a, b in zip(ours_p, theirs_p, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert mine["state"].keys() == torchs["state"].keys()
    for i, entry in torchs["state"].items():
        for key, value in entry.items():
            assert torch.equal(mine["state"][i][key], value), (i, key)
    assert mine["param_groups"] == torchs["param_groups"]


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"weight_decay": 0.0},
        {"weight_decay": 1.0, "lr": 0.05},
        {"betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1, "lr": 0.05},
    ],
)
def test_steps_match_torch_bit_for_bit(knobs):
    (ours_p, ours, ours_s), (theirs_p, theirs, theirs_s) = _pair(**knobs)
    assert _run(ours, ours_s, ours_p, range(12)) == _run(theirs, theirs_s, theirs_p, range(12))
    _assert_same(ours_p, ours, theirs_p, theirs)
    assert ours_s.state_dict() == theirs_s.state_dict()


def _saved(state: dict) -> dict:
    """Through a file, as a checkpoint stores it (torch's `load_state_dict` keeps the very
    tensors it is given, which in memory would share them with the writer)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


@pytest.mark.parametrize("direction", ["torch into ours", "ours into torch"])
def test_a_checkpoint_restores_across_the_two(direction):
    """A run saved under either optimizer resumes under the other and steps on identically."""
    (ours_p, ours, ours_s), (theirs_p, theirs, theirs_s) = _pair(weight_decay=0.05)
    writer, reader = ((theirs_p, theirs, theirs_s), (ours_p, ours, ours_s))
    if direction == "ours into torch":
        writer, reader = reader, writer
    _run(writer[1], writer[2], writer[0], range(5))
    with torch.no_grad():
        for a, b in zip(reader[0], writer[0], strict=True):
            a.copy_(b)
    reader[1].load_state_dict(_saved(writer[1].state_dict()))
    reader[2].load_state_dict(_saved(writer[2].state_dict()))
    assert _run(reader[1], reader[2], reader[0], range(5, 11)) == _run(
        writer[1], writer[2], writer[0], range(5, 11)
    )
    _assert_same(ours_p, ours, theirs_p, theirs)


def test_the_defaults_are_torchs():
    ours, theirs = AdamW(_params()), torch.optim.AdamW(_params())
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]


def test_a_restored_state_brings_its_settings_and_its_unstepped_parameters():
    """The saved group's rate, betas and decay replace the constructor's; a parameter that
    never had a gradient has no state, before and after."""
    writer_p = _params()
    writer = torch.optim.AdamW(writer_p, lr=0.2, betas=(0.5, 0.6), eps=1e-3, weight_decay=0.3)
    _grads(writer_p, 1)  # parameter 2 has no gradient on odd steps
    writer.step()
    saved = _saved(writer.state_dict())
    reader = AdamW(_params())
    reader.load_state_dict(saved)
    assert reader.state_dict()["param_groups"] == writer.state_dict()["param_groups"]
    assert sorted(reader.state_dict()["state"]) == [0, 1, 3]


def test_state_for_other_parameters_is_refused():
    params = _params()
    opt = AdamW(params)
    _grads(params, 0)
    opt.step()
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="for \\[4\\] parameters in 1 group\\(s\\), not 3"):
        AdamW(params[:3]).load_state_dict(saved)
    with pytest.raises(ValueError, match="parameter 1 has shape \\(5,\\), the model's has \\(6,\\)"):
        AdamW([params[0], torch.zeros(6, requires_grad=True), *params[2:]]).load_state_dict(saved)
    amsgrad = torch.optim.AdamW(_params(), amsgrad=True).state_dict()
    with pytest.raises(ValueError, match="amsgrad=True"):
        AdamW(_params()).load_state_dict(amsgrad)
    with pytest.raises(ValueError, match="betas must lie in"):
        AdamW(params, betas=(0.9, 1.0))
    for knob in ("lr", "eps", "weight_decay"):
        with pytest.raises(ValueError, match="must be >= 0"):
            AdamW(params, **{knob: -1e-9})
    AdamW(params, lr=0.0, eps=0.0, weight_decay=0.0)  # as torch, zero is allowed
    with pytest.raises(ValueError, match="no parameters"):
        AdamW([])


def test_zero_grad_keeps_or_drops_the_gradients():
    params = _params()
    opt = AdamW(params)
    _grads(params, 1)  # parameter 2 has none
    opt.zero_grad(set_to_none=False)
    assert params[2].grad is None
    assert all(p.grad is not None and not p.grad.any() for i, p in enumerate(params) if i != 2)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_stepping_never_imports_torch_dynamo():
    """torch.optim's first optimizer imports torch._dynamo (about 2 s on 2 cores); ours must
    not, or every `assay train` start pays it again."""
    script = (
        "import sys, torch\n"
        "from assay.adamw import AdamW, LambdaSchedule\n"
        "p = torch.ones(3, requires_grad=True)\n"
        "opt = AdamW([p], lr=0.1); sched = LambdaSchedule(opt, lambda s: 1.0)\n"
        "(p * p).sum().backward(); opt.step(); sched.step(); opt.zero_grad()\n"
        "opt.load_state_dict(opt.state_dict()); sched.load_state_dict(sched.state_dict())\n"
        "torch.nn.utils.clip_grad_norm_([p], 1.0)\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_module_of_assay_steps_through_torch_optim():
    """The trainer and the prior builds use assay.adamw; one `torch.optim` optimizer anywhere
    in a run brings the `torch._dynamo` import back."""
    package = Path(__file__).resolve().parents[1] / "assay"
    users = [
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if path.name != "adamw.py" and re.search(r"\btorch\.optim\b|from torch import optim", path.read_text())
    ]
    assert users == []
