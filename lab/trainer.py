"""The one Trainer every task runs under: RL agents, NLP and vision models alike.

The task supplies losses (`Task.train_step`) and evaluations; the Trainer owns the loop and everything around
it: optimizer, LR schedule, gradient clipping, bf16 autocast, torch.compile, progress, logging, evaluation,
checkpoints (periodic, best, on stop), early stopping, seeding, Ctrl-C/SIGTERM and DDP under torchrun.
"""
from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lab import checkpoint as ckpt
from lab.config import RunConfig, config_to_dict
from lab.devices import autocast, resolve_device
from lab.distributed import DistInfo, barrier, init_distributed
from lab.errors import LabError, did_you_mean
from lab.optim import build_optimizer, lr_factor
from lab.registry import TASKS
from lab.runs import RESULT_FILE
from lab.seeding import rng_state, seed_everything, set_rng_state
from lab.task import StepOutput, Task
from lab.tracking import Tracker, truncate_metrics

Callback = Callable[["Trainer"], None]


def time_limit(seconds: float, reason: str, start: float | None = None) -> Callback:
    """A callback that ends training the way `trainer.stop_at` does (final evaluation, checkpoint) once
    `seconds` of wall clock have passed since `start` (a `time.perf_counter()` value; default: now)."""
    started = time.perf_counter() if start is None else start

    def check(trainer: Trainer) -> None:
        if time.perf_counter() - started >= seconds and trainer.early_stop_reason is None:
            trainer.early_stop_reason = reason

    return check


class TrainingInterrupted(Exception):
    """Raised after a stop request (Ctrl-C, SIGTERM) once the checkpoint is written."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.checkpoint = signum, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers (its state_dict keys are the canonical ones)."""
    while isinstance(model, DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, DistributedDataParallel) else model._orig_mod
    return model


def crossed(before: int, after: int, every: int | None) -> bool:
    """Did the step counter pass a multiple of `every` (steps may advance by more than one)?"""
    return every is not None and after // every > before // every


class Trainer:
    def __init__(self, config: RunConfig, run_dir: Path | None, callbacks: list[Callback] | None = None,
                 run_id: str | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.callbacks = list(callbacks or [])
        self.run_id = run_id or (run_dir.name if run_dir else "run")
        self.device = resolve_device(config.device)
        self.dist: DistInfo = init_distributed(self.device)
        task_class = TASKS.get(config.task)
        if self.dist.enabled and not task_class.supports_ddp:
            raise LabError(f"task '{config.task}' does not run under torchrun; start it with plain `lab train`")
        seed_everything(config.seed + self.dist.rank, config.trainer.deterministic)
        if config.trainer.cpu_threads:
            torch.set_num_threads(config.trainer.cpu_threads)

        self.task: Task = task_class(config, self.device, run_dir, self.dist)
        switches = getattr(config, "model", None)
        self.bf16 = bool(getattr(switches, "bf16", False))
        if getattr(switches, "compile", False):
            self.task.model.compile()
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.task.model = DistributedDataParallel(self.task.model, device_ids=ids)
        self.optimizer = build_optimizer(self.task.parameter_groups(), config.optim)
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]

        trainer_cfg = config.trainer
        self.best_metric = trainer_cfg.best_metric or task_class.best_metric
        self.best_mode = trainer_cfg.best_mode or task_class.best_mode
        self.best_checkpoint = trainer_cfg.best_checkpoint or task_class.best_checkpoint
        self.step = self.updates = self.evals = self.bad_evals = 0
        self.last_eval_step = -1
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.newer_saved_best: tuple[int, float] | None = None  # (step, value) of a best past the resumed step
        self.own_weights_only_best: str | None = None  # the weights-only best this process wrote last
        self.window: dict[str, list[Any]] = {}  # metric -> [sum, count] over the current log window
        self.last_eval: dict[str, float] = {}
        self.stop_signal: int | None = None
        self.early_stop_reason: str | None = None
        self.tracker: Tracker | None = None

    # --- the loop ---------------------------------------------------------------------------------------------
    def fit(self, resume_from: Path | None = None) -> dict[str, Any]:
        cfg = self.config.trainer
        if resume_from is not None:
            self.restore(ckpt.read_checkpoint(resume_from))
            self.newer_saved_best = self._newer_saved_best()
            if self.run_dir is not None and self.dist.is_main:
                truncate_metrics(self.run_dir, self.step)
        self.tracker = self._make_tracker()
        previous_handlers = self._install_signal_handlers()
        progress = _Progress(cfg.max_steps, self.step, bar=cfg.progress and self.dist.is_main,
                             lines=self.dist.is_main)
        tick_time, tick_step = time.perf_counter(), self.step
        exit_code = 1
        try:
            with progress:
                while self.step < cfg.max_steps and self.early_stop_reason is None and not self._stop_requested():
                    before = self.step
                    with autocast(self.device, self.bf16):
                        out = self.task.train_step()
                    if out.loss is not None:
                        self._update(out.loss)
                    self.step += out.steps
                    self._accumulate(out)
                    if crossed(before, self.step, cfg.log_every):
                        now = time.perf_counter()
                        rate = (self.step - tick_step) / max(now - tick_time, 1e-9)
                        tick_time, tick_step = now, self.step
                        progress.show(self._log_train(rate))
                    if crossed(before, self.step, cfg.eval_every):
                        self.task.evaluation_is_final = self.step >= cfg.max_steps
                        progress.print(self._evaluate())
                    if crossed(before, self.step, cfg.checkpoint_every):
                        self.save()
                    for callback in self.callbacks:
                        callback(self)
                    progress.advance(self.step)
            if self.stop_signal is not None:
                raise TrainingInterrupted(self.stop_signal, self.save())
            if self.window:  # the last, partial log window
                progress.show(self._log_train((self.step - tick_step) / max(time.perf_counter() - tick_time, 1e-9)))
            if self.last_eval_step != self.step:
                self.task.evaluation_is_final = True
                progress.print(self._evaluate())
            elif not self.task.evaluation_is_final and self.dist.is_main:  # stopped early right after an eval
                self.task.evaluation_is_final = True
                self.task.log_media(self.tracker, self.step)
            self.save()
            self._catch_up_with_saved_best(finished=True)
            if self.early_stop_reason:
                progress.print(f"early stop: {self.early_stop_reason}")
            exit_code = 0
            result = {"step": self.step, "eval": dict(self.last_eval), "best": self.best_value,
                      "best_step": self.best_step, "best_metric": self.best_metric,
                      "early_stop": self.early_stop_reason}
            if self.run_dir is not None and self.dist.is_main:  # what `lab runs` reports as the run's outcome
                ckpt.atomic_write_json(self.run_dir / RESULT_FILE, {
                    **result, "eval_details": self.task.evaluation_details(),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
            return result
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            self.tracker.finish(exit_code)
            self.task.close()

    def _update(self, loss: torch.Tensor) -> None:
        cfg = self.config.optim
        factor = lr_factor(self.step, self.config.trainer.max_steps, cfg)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * factor
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self._add_metric("grad_norm", grad_norm.detach())
        self.optimizer.step()
        self.updates += 1
        self.task.after_update(self.updates)
        self._add_metric("loss", loss.detach().float())

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop after the current step, write a checkpoint and raise TrainingInterrupted (as Ctrl-C does)."""
        self.stop_signal = signum

    def _stop_requested(self) -> bool:
        if not self.dist.enabled:
            return self.stop_signal is not None
        flag = torch.tensor([0 if self.stop_signal is None else self.stop_signal], device=self._dist_device())
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self.stop_signal = int(flag.item()) or None
        return self.stop_signal is not None

    # --- metrics, evaluation, early stopping --------------------------------------------------------------------
    def _add_metric(self, name: str, value: float | torch.Tensor) -> None:
        total, count = self.window.get(name, (0.0, 0))
        self.window[name] = [total + value, count + 1]

    def _accumulate(self, out: StepOutput) -> None:
        for name, value in out.metrics.items():
            self._add_metric(name, value.detach() if isinstance(value, torch.Tensor) else value)

    def _log_train(self, steps_per_second: float) -> dict[str, float]:
        metrics = {f"train/{k}": float(total) / count for k, (total, count) in self.window.items() if count}
        metrics["train/lr"] = self.optimizer.param_groups[0]["lr"]
        self.window = {}
        self.tracker.log({**metrics, "time/steps_per_second": steps_per_second}, self.step)
        return metrics

    def _evaluate(self) -> str:
        was_training = self.task.model.training
        self.task.model.eval()
        with torch.no_grad(), autocast(self.device, self.bf16):
            results = self.task.evaluate(self.config.trainer.eval_episodes)
        self.task.model.train(was_training)
        self.evals += 1
        self.last_eval_step = self.step
        self.last_eval = {f"eval/{k}": float(v) for k, v in results.items()}
        self.tracker.log(self.last_eval, self.step)
        if self.dist.is_main:
            self.task.log_media(self.tracker, self.step)
        line = f"step {self.step:,} eval: " + ", ".join(f"{k[5:]} {v:.4g}" for k, v in self.last_eval.items())
        if self.best_metric is None:
            return line
        if self.best_metric not in self.last_eval:
            raise LabError(f"trainer.best_metric '{self.best_metric}' is not an eval metric"
                           f"{did_you_mean(self.best_metric, self.last_eval)}")
        value = self.last_eval[self.best_metric]
        if self._better(value, self.best_value):
            self.best_value, self.best_step, self.bad_evals = value, self.step, 0
            saved = self.newer_saved_best
            if saved is None or self._better(value, saved[1]):
                self.save(best=True)
                self.newer_saved_best = None
        else:
            self.bad_evals += 1
        self._catch_up_with_saved_best()
        cfg = self.config.trainer
        if cfg.stop_at is not None and (value >= cfg.stop_at if self.best_mode == "max" else value <= cfg.stop_at):
            self.early_stop_reason = f"{self.best_metric} = {value:.4g} reached trainer.stop_at = {cfg.stop_at}"
        elif cfg.patience is not None and self.bad_evals >= cfg.patience:
            self.early_stop_reason = f"no improvement of {self.best_metric} in {cfg.patience} evaluations"
        return line + f" (best {self.best_value:.4g} at step {self.best_step:,})"

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        record = self._record()
        record["trainer"]["window"] = self.window
        return {
            **record,
            "optimizer": self.optimizer.state_dict(),
            "task": self.task.state_dict(),
            "rng": rng_state(),
        }

    def _record(self) -> dict[str, Any]:
        """What every checkpoint's state.json tells about the run (all a weights-only checkpoint holds besides
        the model); the partial log window, which may hold tensors, is there only to resume."""
        return {
            "meta": {"task": self.config.task, "step": self.step, "run_id": self.run_id,
                     "config": config_to_dict(self.config)},
            "trainer": {"step": self.step, "updates": self.updates, "evals": self.evals,
                        "bad_evals": self.bad_evals, "best_value": self.best_value, "best_step": self.best_step,
                        "last_eval_step": self.last_eval_step, "last_eval": self.last_eval},
        }

    def save(self, best: bool = False) -> Path | None:
        """Write a checkpoint of the current step (rank 0 only); point latest (and best) at it; prune old ones.

        With `best_checkpoint: weights` a best checkpoint holds the model alone and `latest` stays on the last
        full one: writing a DQN's gigabytes of replay at every improvement would stall training for seconds."""
        if self.run_dir is None:
            return None
        root = ckpt.checkpoint_dir(self.run_dir)
        weights_only = best and self.best_checkpoint == "weights"
        path = root / ckpt.step_name(self.step, weights_only)
        if self.dist.is_main:
            model_state = unwrap(self.task.model).state_dict()
            if weights_only:
                ckpt.write_checkpoint(path, model_state, self._record(), weights_only=True)
                self.own_weights_only_best = path.name
            else:
                ckpt.write_checkpoint(path, model_state, self.state_dict())
                ckpt.atomic_write_json(root / "latest.json", {"name": path.name, "step": self.step})
            # A full checkpoint right after this process's weights-only best of the same step holds the same model
            # (nothing trains between an evaluation and the checkpoints of its step): it takes the best's place.
            if best or self.own_weights_only_best == ckpt.step_name(self.step, weights_only=True):
                ckpt.atomic_write_json(root / "best.json", {"name": path.name, "step": self.step,
                                                            "metric": self.best_metric, "value": self.best_value})
            self._prune(root)
        barrier(self.dist)
        return path

    def _prune(self, root: Path) -> None:
        """Keep what latest and best point at and the last `keep_last` full checkpoints."""
        keep = {record["name"] for record in (ckpt.read_pointer(root, "latest"), ckpt.read_pointer(root, "best"))
                if record is not None}
        full = sorted(p for p in root.glob("step_*") if p.is_dir())
        keep.update(p.name for p in full[-self.config.trainer.keep_last:])
        for old in full + [p for p in root.glob("best_step_*") if p.is_dir()]:
            if old.name not in keep:
                shutil.rmtree(old)

    def _better(self, value: float, than: float | None) -> bool:
        return than is None or (value > than if self.best_mode == "max" else value < than)

    # A weights-only best can be newer than the full checkpoint a run resumes from. Until the resumed run passes
    # its step, it counts improvements and patience as the unbroken run did, but writes a best checkpoint only
    # for a model better than that saved one; from its step on, the saved one is the run's best.
    def _newer_saved_best(self) -> tuple[int, float] | None:
        record = ckpt.read_pointer(ckpt.checkpoint_dir(self.run_dir), "best") if self.run_dir is not None else None
        if record is None or record.get("metric") != self.best_metric or record.get("value") is None:
            return None
        newer = record["step"] > (self.best_step if self.best_step is not None else -1)
        return (record["step"], record["value"]) if newer else None

    def _catch_up_with_saved_best(self, finished: bool = False) -> None:
        saved = self.newer_saved_best
        if saved is not None and (finished or self.step >= saved[0]):
            if self._better(saved[1], self.best_value):
                self.best_step, self.best_value = saved
            self.newer_saved_best = None

    def restore(self, checkpoint: ckpt.Checkpoint) -> None:
        state = checkpoint.state
        if state["meta"]["task"] != self.config.task:
            raise LabError(f"checkpoint '{checkpoint.path}' is from task '{state['meta']['task']}', "
                           f"not '{self.config.task}'")
        ckpt.load_model_weights(unwrap(self.task.model), checkpoint.model, checkpoint.path)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as error:  # parameter groups of another shape: another config, or an older lab
            raise LabError(f"checkpoint '{checkpoint.path}' holds optimizer state for other parameter groups than "
                           f"this run's ({error}); evaluate it with lab eval, or start a new run") from None
        self.task.load_state_dict(state["task"])
        trainer = state["trainer"]
        for key in ("step", "updates", "evals", "bad_evals", "best_value", "best_step", "last_eval_step"):
            setattr(self, key, trainer[key])
        self.last_eval = trainer["last_eval"]
        self.window = {k: list(v) for k, v in trainer["window"].items()}
        self.run_id = state["meta"]["run_id"]
        set_rng_state(state["rng"])

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _make_tracker(self) -> Tracker:
        tracking = self.config.tracking
        enabled = self.dist.is_main and self.run_dir is not None
        return Tracker(self.run_dir or Path("."), config_to_dict(self.config), tracking.mode, tracking.project,
                       self.run_id, name=tracking.name, entity=tracking.entity, tags=tracking.tags,
                       enabled=enabled)

    def _dist_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: Any) -> None:
            if self.stop_signal is not None:  # second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop_signal = signum
            if self.dist.is_main:
                print(f"\n{signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
                      "(press Ctrl-C again to abort without one)", file=sys.stderr, flush=True)

        return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


class _Progress:
    """A rich progress bar (step, rate, ETA, latest metrics); eval lines are printed also without the bar."""

    def __init__(self, total: int, start: int, bar: bool, lines: bool) -> None:
        self.enabled, self.lines = bar, lines
        if not bar:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        # On stderr, like every progress line: stdout carries only results, so `lab train --json > out` is JSON.
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"), console=Console(stderr=True))
        self.task_id = self.bar.add_task("train", total=total, completed=start, rate="", metrics="")

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()

    def advance(self, step: int) -> None:
        if self.enabled:
            self.bar.update(self.task_id, completed=step)

    def show(self, metrics: dict[str, float]) -> None:
        if self.enabled:
            text = " ".join(f"{k.split('/')[-1]}={v:.3g}" for k, v in metrics.items() if k != "train/lr")
            speed = self.bar.tasks[0].speed
            self.bar.update(self.task_id, metrics=text, rate=f"{speed:,.0f} steps/s" if speed else "")

    def print(self, line: str) -> None:
        if self.enabled and self.bar.console.is_terminal:
            self.bar.console.print(line, highlight=False)
        elif self.lines:  # logs and pipes: whole lines, not wrapped at rich's default 80 columns
            print(line, file=sys.stderr, flush=True)
