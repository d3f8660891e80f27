"""Optimizers and the learning-rate schedule the Trainer steps with."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer
from torch.optim.adam import adam as adam_update

from lab.config import OptimConfig


class LeanAdam(torch.optim.Adam):
    """torch's fused Adam with a lighter `step` and `zero_grad`, for small models whose updates are bound by
    per-call overhead rather than arithmetic.

    `Optimizer.step` wraps the fused kernel in hooks, profiler records, graph-capture checks and a walk over
    every parameter's state; for CartPole's Q-network on a CPU that costs several times the kernel (about
    0.3 ms a step against 0.07 ms), and it is paid on every update. Once every parameter has its state, and with
    no closure and no step hooks, `step` calls the functional `torch.optim.adam.adam` on the state directly:
    the same fused update, bitwise. Anything else goes through torch's own `step`.
    """

    def __init__(self, params: Any, **options: Any) -> None:
        super().__init__(params, fused=True, **options)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        if closure is not None or self._has_step_hooks():
            return super().step(closure)
        groups = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            states = [self.state.get(p) for p in params]
            if not all(states):  # a parameter's first step creates its state: torch's own path
                return super().step()
            groups.append((group, params, states))
        with torch.no_grad():
            for group, params, states in groups:
                beta1, beta2 = group["betas"]
                adam_update(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                            [s["exp_avg_sq"] for s in states], [], [s["step"] for s in states], fused=True,
                            amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                            weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        return None

    # Optimizer.__init__ wraps a class's `step` in that hooks-and-profiler wrapper unless it is marked as wrapped
    # already; this `step` hands every case that needs the wrapper to torch's own (wrapped) `step`.
    step.hooked = True  # type: ignore[attr-defined]

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _has_step_hooks(self) -> bool:
        return bool(getattr(self, "_optimizer_step_pre_hooks", None) or
                    getattr(self, "_optimizer_step_post_hooks", None) or
                    getattr(torch_optimizer, "_global_optimizer_pre_hooks", None) or
                    getattr(torch_optimizer, "_global_optimizer_post_hooks", None))


def build_optimizer(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    common = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name == "adam":
        return LeanAdam(groups, betas=cfg.betas, eps=cfg.eps, **common)
    if cfg.name == "adamw":
        # One fused kernel per step instead of a handful of ops per tensor: most of the step cost for small nets.
        return torch.optim.AdamW(groups, betas=cfg.betas, eps=cfg.eps, fused=True, **common)
    if cfg.name == "radam":  # Adam with a variance-rectified warm-up (Liu et al. 2020), as PQN trains with
        return torch.optim.RAdam(groups, betas=cfg.betas, eps=cfg.eps, **common)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(groups, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **common)
    return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.nesterov, **common)


def lr_factor(step: int, max_steps: int, cfg: OptimConfig) -> float:
    """Multiplier on each group's base LR at trainer step `step`: warm-up, then constant/linear/cosine decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, max_steps - cfg.warmup_steps))
    floor = cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return 1.0 - (1.0 - floor) * progress
    if cfg.schedule == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0
