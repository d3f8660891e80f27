import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models on a shared 2-core machine: one intra-op thread avoids thrashing (10x faster here).
torch.set_num_threads(1)

TINY_DQN = [
    "device=cpu", "tracking.mode=disabled", "trainer.progress=false", "trainer.max_steps=600",
    "trainer.eval_every=200", "trainer.eval_episodes=2", "trainer.checkpoint_every=200", "trainer.log_every=100",
    "agent.learning_starts=100", "agent.buffer_size=2000", "model.hidden=[32,32]",
]
TINY_DIGITS = [
    "device=cpu", "tracking.mode=disabled", "trainer.progress=false", "trainer.max_steps=40",
    "trainer.eval_every=20", "trainer.checkpoint_every=20", "trainer.log_every=10", "data.batch_size=32",
    "optim.warmup_steps=5",
]


@pytest.fixture
def tiny_dqn() -> list[str]:
    return list(TINY_DQN)


@pytest.fixture
def tiny_digits() -> list[str]:
    return list(TINY_DIGITS)
