"""Training throughput of the lab's ResNet-18 against timm's, in images per second.

One training step is forward + cross-entropy + backward + SGD step on synthetic images and labels
(1000 classes, ImageNet stem), under bf16 autocast with channels_last memory format. Both models run the same
batch, eager and with torch.compile, in one process; the table shows images/s and the ratio lab/timm.
timm is imported only here; without it the lab's model is measured alone.

    python bench/backbone_throughput.py                       # GPU: batch 256, 224×224
    python bench/backbone_throughput.py --device cpu          # tiny CPU budget: batch 4, 64×64, 2 steps
    python bench/backbone_throughput.py --device cpu --no-compile   # seconds: compiling on a CPU takes minutes
    python bench/backbone_throughput.py --json --batch 128 --steps 50
"""
from __future__ import annotations

import argparse
import json
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


def measure(
    make_model: Callable[[], nn.Module],
    compiled: bool,
    device: torch.device,
    batch: int,
    image_size: int,
    warmup: int,
    steps: int,
) -> dict[str, float]:
    """Images/s over `steps` timed training steps, after `warmup` untimed ones (which include compilation)."""
    torch.manual_seed(0)
    model = make_model().to(device, memory_format=torch.channels_last).train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    forward = torch.compile(model) if compiled else model
    images = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start_compile = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - start_compile

    if device.type == "cuda":  # events time the GPU work itself, not the Python that queues it
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        begin = time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - begin
    del model, forward, optimizer
    if compiled:
        torch._dynamo.reset()  # free compiled graphs before the next model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "images_per_s": batch * steps / seconds,
        "step_ms": 1000 * seconds / steps,
        "warmup_s": warmup_s,
        "params": params,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch", type=int, help="images per step (default: 256 on GPU, 4 on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 30 on GPU, 2 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, compilation included (default: 10 GPU, 1 CPU)")
    parser.add_argument("--image-size", type=int, help="square input size (default: 224 on GPU, 64 on CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    gpu = args.device == "cuda"
    for name, on_gpu, on_cpu in (("batch", 256, 4), ("steps", 30, 2), ("warmup", 10, 1), ("image_size", 224, 64)):
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
    results: dict[str, dict[str, dict[str, float] | float | str]] = {}
    for setting in ("eager", "compiled")[: 1 if args.no_compile else 2]:
        results[setting] = {}
        for name, make_model in models.items():
            try:
                results[setting][name] = measure(
                    make_model, setting == "compiled", device, args.batch, args.image_size, args.warmup, args.steps
                )
            except Exception as error:  # noqa: BLE001 - e.g. torch.compile without a C++ compiler: report and go on
                message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                results[setting][name] = {"error": f"{type(error).__name__}: {message}"}
        lab, timm = results[setting].get("lab", {}), results[setting].get("timm", {})
        if "images_per_s" in lab and "images_per_s" in timm:
            results[setting]["ratio_lab_over_timm"] = lab["images_per_s"] / timm["images_per_s"]
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "timm": timm_version,
        "batch": args.batch,
        "image_size": args.image_size,
        "warmup": args.warmup,
        "steps": args.steps,
        "precision": "bf16 autocast, channels_last",
        "results": results,
        "notes": notes,
    }


def print_table(report: dict) -> None:
    print(
        f"resnet18 training throughput on {report['device']} · torch {report['torch']} · "
        f"timm {report['timm'] or '-'}\n"
        f"batch {report['batch']} × 3×{report['image_size']}×{report['image_size']}, {report['precision']}, "
        f"{report['steps']} timed steps after {report['warmup']} warm-up\n"
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
            ratio_text = f"{ratio:.2f}" if name == "lab" and ratio is not None else ""
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
