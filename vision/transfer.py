"""A backbone's weights from another run: an image classifier's model or a DQN/PQN agent's pixel torso, so
`model.init_from=RUN_DIR` starts an image classifier or an agent from any run that trained the same network.

Everything but the classifier layer (`head.fc`) is copied: the backbone and the head's hidden layers
(pre-logits), so the new run must build the same network up to its classifier. A network that only half fits
is an error, never a silent partial copy."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lab import checkpoint as ckpt
from lab.errors import LabError

AGENT_ENCODER = "torso.encoder."  # where a Q-network keeps its vision encoder
CLASSIFIER = "head.fc."  # the layer a transfer replaces


def transferable(model: nn.Module) -> list[str]:
    """The state-dict keys of `model` that a transfer fills: all but the classifier's."""
    return [key for key in model.state_dict() if not key.startswith(CLASSIFIER)]


def backbone_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The best checkpoint's network, keyed as a backbone: an agent's encoder loses its `torso.encoder.` prefix."""
    if not run_dir.is_dir():
        raise LabError(f"model.init_from: run dir '{run_dir}' does not exist; give a run made by `lab train`")
    try:
        weights = ckpt.read_model_weights(ckpt.find_checkpoint(run_dir, "best"))
    except LabError as error:
        raise LabError(f"model.init_from: {error}") from None
    if any(key.startswith(AGENT_ENCODER) for key in weights):
        return {key.removeprefix(AGENT_ENCODER): value for key, value in weights.items()
                if key.startswith(AGENT_ENCODER)}
    if any(key.startswith("torso.") for key in weights):
        raise LabError(f"model.init_from: '{run_dir}' is an agent with an MLP torso, not a vision backbone")
    return weights


def load_backbone(model: nn.Module, run_dir: Path) -> set[str]:
    """Copy another run's backbone into `model` (all but the classifier); returns the keys it filled."""
    source = backbone_weights(run_dir)
    own = model.state_dict()
    keys = transferable(model)
    for key in keys:
        if key not in source or source[key].shape != own[key].shape:
            found = "is missing" if key not in source else f"has shape {list(source[key].shape)}"
            raise LabError(f"model.init_from: '{key}' {found} in '{run_dir}' but this model's is "
                           f"{list(own[key].shape)}: the new run must build the same network up to its classifier "
                           "(same backbone name, options and input size)")
    extra = sorted(key for key in source if key not in own and not key.startswith(CLASSIFIER))
    if extra:
        raise LabError(f"model.init_from: '{run_dir}' has '{extra[0]}' (and {len(extra) - 1} more tensors) that this "
                       "model lacks: the new run must build the same network up to its classifier (same backbone "
                       "name, options and input size)")
    model.load_state_dict({key: source[key] for key in keys}, strict=False)
    return set(keys)
