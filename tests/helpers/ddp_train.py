"""Run by torchrun in tests: train the digits classifier on 2 gloo ranks and save each rank's weights."""
import sys
from pathlib import Path

import torch

from lab.config import load_config
from lab.runs import create_run_dir
from lab.trainer import Trainer, unwrap

run_dir, out_dir, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
config = load_config("vision/digits", overrides)
rank = int(__import__("os").environ["RANK"])
if rank == 0:
    create_run_dir(run_dir, config, "vision/digits")
torch.distributed.init_process_group("gloo")
torch.distributed.barrier()
first_batch = []
trainer = Trainer(config, run_dir, callbacks=[lambda t: first_batch.append(t.task.batcher.state_dict()["batch"])])
first_indices = trainer.task.batcher._epoch_order()[: config.data.batch_size].clone()
trainer.fit()
state = {k: v.clone() for k, v in unwrap(trainer.task.model).state_dict().items()}
state["batches_seen"] = torch.tensor(len(first_batch))
state["first_batch"] = first_indices
torch.save(state, out_dir / f"rank{rank}.pt")
