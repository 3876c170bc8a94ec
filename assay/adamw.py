"""AdamW and its learning-rate schedule in plain tensors.

The arithmetic is `torch.optim.AdamW`'s single-tensor path (the one torch takes on CPU),
operation for operation, so a run steps its weights bit for bit as it did under
`torch.optim`, and the state dicts have torch's layout: a checkpoint written by either
restores into the other. Why not `torch.optim` itself: its first optimizer imports
`torch._dynamo` (`add_param_group` and `step` are wrapped to keep the compiler out), and
that import is about 2 s of every `assay train`, prior build and lab worker start on a
2-core machine, about a third of a short run. Nothing here is compiled, so the wrapper
buys us nothing. tests/test_adamw.py holds both to `torch.optim` as the oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

# the group keys torch.optim.AdamW writes; ours are fixed to its defaults and checked on load
_TORCH_FLAGS = {
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": True,
}


class AdamW:
    """AdamW over one group of parameters: decoupled weight decay, bias-corrected moments."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        params = list(params)
        if not params:
            raise ValueError("AdamW: no parameters to optimize")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"AdamW: betas must lie in [0, 1), got {betas}")
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"AdamW: lr, eps and weight_decay must be >= 0, got {lr}, {eps}, {weight_decay}")
        group = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        self.param_groups: list[dict[str, Any]] = [{**group, **_TORCH_FLAGS, "params": params}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (the others keep their moments)."""
        group = self.param_groups[0]
        lr, (beta1, beta2) = group["lr"], group["betas"]
        eps, decay = group["eps"], group["weight_decay"]
        for param in group["params"]:
            if param.grad is None:
                continue
            grad = param.grad
            state = self.state.get(param)
            if state is None:  # torch counts steps in a float32 CPU scalar; so do we
                state = self.state[param] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
                }
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            state["step"] += 1
            if decay != 0:
                param.mul_(1 - lr * decay)
            exp_avg.lerp_(grad, 1 - beta1)  # m ← β1·m + (1-β1)·g
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v ← β2·v + (1-β2)·g²
            step = state["step"].item()
            bias_correction1 = 1 - beta1**step
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-(lr / bias_correction1))

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: per-parameter state keyed by the parameter's index."""
        params = self.param_groups[0]["params"]
        state = {i: dict(self.state[p]) for i, p in enumerate(params) if p in self.state}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return {"state": state, "param_groups": [{**group, "params": list(range(len(params)))}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` (ours or torch.optim.AdamW's) wrote for these parameters."""
        groups = state_dict["param_groups"]
        params = self.param_groups[0]["params"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(params):
            raise ValueError(
                f"optimizer state is for {[len(g['params']) for g in groups]} parameters in "
                f"{len(groups)} group(s), not {len(params)} in one"
            )
        saved = groups[0]
        for key, default in _TORCH_FLAGS.items():
            if saved.get(key, default) != default:
                raise ValueError(f"optimizer state was written with {key}={saved[key]!r}; only {default!r} is supported")
        state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        for index, p in zip(saved["params"], params, strict=True):
            entry = state_dict["state"].get(index)
            if entry is None:
                continue
            if entry["exp_avg"].shape != p.shape:
                raise ValueError(
                    f"optimizer state for parameter {index} has shape {tuple(entry['exp_avg'].shape)}, "
                    f"the model's has {tuple(p.shape)}"
                )
            state[p] = {
                "step": entry["step"].detach().to(torch.float32).clone(),
                "exp_avg": entry["exp_avg"].to(p.device, p.dtype).clone(),
                "exp_avg_sq": entry["exp_avg_sq"].to(p.device, p.dtype).clone(),
            }
        self.state = state
        self.param_groups[0].update({k: v for k, v in saved.items() if k != "params"})
        self.param_groups[0]["betas"] = tuple(self.param_groups[0]["betas"])


class LambdaSchedule:
    """The learning rate at update `t` is the initial rate × `factor(t)`, as
    `torch.optim.lr_scheduler.LambdaLR` sets it (and with its state-dict keys)."""

    def __init__(self, optimizer: AdamW, factor: Callable[[int], float]) -> None:
        self.optimizer, self.factor = optimizer, factor
        group = optimizer.param_groups[0]
        group.setdefault("initial_lr", group["lr"])
        self.base_lr = group["initial_lr"]
        self.last_epoch = 0  # the updates done; torch's name
        self._set()

    def _set(self) -> None:
        self.optimizer.param_groups[0]["lr"] = self.base_lr * self.factor(self.last_epoch)

    def get_last_lr(self) -> list[float]:
        """The rate the next update uses (a list, one per group, as torch returns it)."""
        return [self.optimizer.param_groups[0]["lr"]]

    def step(self) -> None:
        self.last_epoch += 1
        self._set()

    def state_dict(self) -> dict[str, Any]:
        return {
            "base_lrs": [self.base_lr],
            "last_epoch": self.last_epoch,
            "_step_count": self.last_epoch + 1,
            "_is_initial": False,
            "_get_lr_called_within_step": False,
            "_last_lr": self.get_last_lr(),
            "lr_lambdas": [None],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        (self.base_lr,) = state_dict["base_lrs"]
        self.last_epoch = int(state_dict["last_epoch"])
        self.optimizer.param_groups[0]["initial_lr"] = self.base_lr
        self.optimizer.param_groups[0]["lr"] = state_dict["_last_lr"][0]
