"""Training throughput of the lab's ResNet-18 against timm's, in images per second.

One training step is forward + cross-entropy + backward + SGD step on synthetic images and labels
(1000 classes, ImageNet stem), under bf16 autocast with channels_last memory format. Both models run the same
batch, eager and with torch.compile, in one process, taking turns over several timed rounds; the table shows
median images/s and the median lab/timm ratio of the rounds with its range.
timm is imported only here; without it the lab's model is measured alone.

    python bench/backbone_throughput.py                       # GPU: batch 256, 224×224
    python bench/backbone_throughput.py --device cpu          # tiny CPU budget: batch 4, 64×64, 2 steps, eager
    python bench/backbone_throughput.py --device cpu --compile      # compiled too: minutes on a CPU
    python bench/backbone_throughput.py --json --batch 128 --steps 50
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

# The class behind the registered name "resnet18", built directly so the benchmark needs only torch
# (create_backbone would import every lab plugin package, games and NLP included).
from vision.backbones.resnet import ResNet  # noqa: E402

NUM_CLASSES = 1000


def lab_resnet18() -> nn.Module:
    return ResNet(blocks_per_stage=(2, 2, 2, 2), stem="imagenet", num_classes=NUM_CLASSES)


def timm_resnet18() -> tuple[Callable[[], nn.Module] | None, str | None]:
    """timm's resnet18 constructor and timm's version, or (None, None) when timm cannot be imported."""
    try:
        import timm
    except ImportError:
        return None, None
    return (lambda: timm.create_model("resnet18", num_classes=NUM_CLASSES)), timm.__version__


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainingStep:
    """One model's training step on fixed synthetic images: forward, cross-entropy, backward, SGD."""

    def __init__(self, make_model: Callable[[], nn.Module], compiled: bool, device: torch.device, batch: int,
                 image_size: int) -> None:
        torch.manual_seed(0)
        self.model = make_model().to(device, memory_format=torch.channels_last).train()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.forward = torch.compile(self.model) if compiled else self.model
        self.device, self.batch = device, batch
        self.images = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(
            memory_format=torch.channels_last)
        self.labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)

    def __call__(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(self.forward(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def seconds_for(self, steps: int) -> float:
        """Wall time of `steps` steps; on CUDA, events time the GPU work rather than the Python that queues it."""
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                self()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000
        begin = time.perf_counter()
        for _ in range(steps):
            self()
        return time.perf_counter() - begin


def measure(factories: dict[str, Callable[[], nn.Module]], compiled: bool, device: torch.device, batch: int,
            image_size: int, warmup: int, steps: int, rounds: int) -> dict[str, dict[str, float] | float | list]:
    """Images/s of each model in `rounds` timed windows of `steps` steps, the models taking turns (the order
    flips every round, so drifting clocks favour neither), after `warmup` untimed steps each (compilation
    included). A model's figure is its median window; the lab/timm ratio is the median of the rounds' ratios."""
    results: dict[str, dict[str, float] | float | list] = {}
    runners: dict[str, TrainingStep] = {}
    for name, make_model in factories.items():
        try:
            runner = TrainingStep(make_model, compiled, device, batch, image_size)
            started = time.perf_counter()
            for _ in range(warmup):
                runner()
            synchronize(device)
            runners[name] = runner
            results[name] = {"warmup_s": time.perf_counter() - started, "params": runner.params}
        except Exception as error:  # noqa: BLE001 - e.g. torch.compile without a C++ compiler: report and go on
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            results[name] = {"error": f"{type(error).__name__}: {message}"}
    windows: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(rounds):
        for name in (list(runners) if round_index % 2 == 0 else list(reversed(runners))):
            windows[name].append(batch * steps / runners[name].seconds_for(steps))
    for name, rates in windows.items():
        results[name].update(images_per_s=statistics.median(rates), step_ms=1000 * batch / statistics.median(rates),
                             rounds_images_per_s=rates)
    if "lab" in windows and "timm" in windows:
        ratios = [lab / timm for lab, timm in zip(windows["lab"], windows["timm"])]
        results["ratio_lab_over_timm"] = statistics.median(ratios)
        results["round_ratios"] = ratios
    runners.clear()
    if compiled:
        torch._dynamo.reset()  # free compiled graphs before the next setting
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch", type=int, help="images per step (default: 256 on GPU, 4 on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 30 on GPU, 2 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default: 10 GPU, 1 CPU)")
    parser.add_argument("--rounds", type=int, help="timed windows per model, taken in turns (default: 5 GPU, 1 CPU)")
    parser.add_argument("--image-size", type=int, help="square input size (default: 224 on GPU, 64 on CPU)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure with torch.compile (default: on GPU yes; on CPU no, it takes minutes)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    gpu = args.device == "cuda"
    args.compile = gpu if args.compile is None else args.compile
    for name, on_gpu, on_cpu in (("batch", 256, 4), ("steps", 30, 2), ("warmup", 10, 1), ("image_size", 224, 64),
                                 ("rounds", 5, 1)):
        if getattr(args, name) is None:
            setattr(args, name, on_gpu if gpu else on_cpu)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    timm_factory, timm_version = timm_resnet18()
    models: dict[str, Callable[[], nn.Module]] = {"lab": lab_resnet18}
    notes = []
    if timm_factory is None:
        notes.append("timm is not installed, so only the lab's resnet18 was measured (pip install timm to compare)")
    else:
        models["timm"] = timm_factory
    results = {setting: measure(models, setting == "compiled", device, args.batch, args.image_size, args.warmup,
                                args.steps, args.rounds)
               for setting in ("eager", "compiled")[: 2 if args.compile else 1]}
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "timm": timm_version,
        "batch": args.batch,
        "image_size": args.image_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "rounds": args.rounds,
        "precision": "bf16 autocast, channels_last",
        "results": results,
        "notes": notes,
    }


def print_table(report: dict) -> None:
    print(
        f"resnet18 training throughput on {report['device']} · torch {report['torch']} · "
        f"timm {report['timm'] or '-'}\n"
        f"batch {report['batch']} × 3×{report['image_size']}×{report['image_size']}, {report['precision']}, "
        f"{report['rounds']} rounds of {report['steps']} timed steps each, taken in turns, after {report['warmup']} "
        f"warm-up; medians\n"
    )
    print(f"{'setting':<10} {'model':<6} {'images/s':>10} {'step ms':>9} {'warm-up s':>10}   lab/timm")
    for setting, rows in report["results"].items():
        ratio = rows.get("ratio_lab_over_timm")
        for name in ("lab", "timm"):
            row = rows.get(name)
            if row is None:
                continue
            if "error" in row:
                print(f"{setting:<10} {name:<6} failed: {row['error']}")
                continue
            ratio_text = ""
            if name == "lab" and ratio is not None:
                spread = rows["round_ratios"]
                ratio_text = f"{ratio:.3f} (rounds {min(spread):.3f}–{max(spread):.3f})"
            numbers = f"{row['images_per_s']:>10,.0f} {row['step_ms']:>9.1f} {row['warmup_s']:>10.1f}"
            print(f"{setting:<10} {name:<6} {numbers}   {ratio_text}")
    for note in report["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
