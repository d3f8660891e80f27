"""Image classification through the unified Trainer: any registered backbone or layer list, on scikit-learn's
bundled digits (the offline default), MNIST IDX files, CIFAR-10 batches or an ImageFolder directory.
Transfer learning: `model.init_from=RUN_DIR` starts from another run's backbone, frozen or fine-tuned."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from lab import checkpoint as ckpt
from lab.config import ModelSwitches, RunConfig, Section
from lab.data import EpochBatcher
from lab.errors import LabError
from lab.registry import TASKS
from lab.seeding import restore_generator
from lab.task import StepOutput, Task
from vision import backbone_from_config
from vision.augment import BatchAugment
from vision.datasets import ImageData, load_cifar10, load_digits, load_image_folder, load_mnist


class AugmentConfig(Section):
    crop_padding: int = Field(0, ge=0)
    hflip: bool = False
    max_rotate: float = Field(0.0, ge=0)
    max_translate: float = Field(0.0, ge=0)


class ImageDataConfig(Section):
    source: Literal["digits", "mnist", "cifar10", "folder"] = "digits"
    path: str | None = Field(None, description="folder of the MNIST/CIFAR-10 files or the ImageFolder root")
    image_size: int | None = Field(32, gt=0, description="resize every image to this square size (None: keep)")
    channels: Literal[1, 3] = 3
    valid_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1, description="split off when the source has no test set")
    split_seed: int = 0
    batch_size: int = Field(64, gt=0)
    augment: AugmentConfig = AugmentConfig()


class ImageModelConfig(ModelSwitches):
    name: str | None = "lenet5"
    layers: list[dict[str, Any]] | None = Field(None, description="a layer list instead of a named backbone")
    options: dict[str, Any] = Field({}, description="backbone keyword arguments, e.g. {act: gelu, drop_rate: 0.2}")
    init_from: str | None = Field(None, description="RUN_DIR whose backbone weights start this run")
    freeze_backbone: bool = False
    backbone_lr: float | None = Field(None, gt=0, description="LR of the pretrained backbone (fine-tuning)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class ImageClassificationConfig(RunConfig):
    task: Literal["image_classification"] = "image_classification"
    data: ImageDataConfig = ImageDataConfig()
    model: ImageModelConfig = ImageModelConfig()


def resize(data: ImageData, size: int) -> ImageData:
    if tuple(data.images.shape[2:]) == (size, size):
        return data
    scaled = F.interpolate(data.images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return ImageData(scaled.round().clamp(0, 255).to(torch.uint8), data.labels, data.class_names)


def load_splits(cfg: ImageDataConfig) -> tuple[ImageData, ImageData, ImageData]:
    """(train, valid, test) with a fixed stratified split that does not depend on the run's seed."""
    from sklearn.model_selection import train_test_split

    if cfg.source != "digits" and not cfg.path:
        raise LabError(f"data.source={cfg.source} needs data.path (a local folder); nothing is downloaded")
    if cfg.source == "digits":
        full, test = load_digits(), None
    elif cfg.source == "mnist":
        full, test = load_mnist(cfg.path, "train"), load_mnist(cfg.path, "test")
    elif cfg.source == "cifar10":
        full, test = load_cifar10(cfg.path, "train"), load_cifar10(cfg.path, "test")
    else:
        full, test = load_image_folder(cfg.path, cfg.image_size, cfg.channels), None

    def split(data: ImageData, fraction: float, seed: int) -> tuple[ImageData, ImageData]:
        index = np.arange(len(data.labels))
        keep, held = train_test_split(index, test_size=fraction, random_state=seed, stratify=data.labels.numpy())
        take = lambda idx: ImageData(data.images[torch.from_numpy(np.sort(idx))],  # noqa: E731
                                     data.labels[torch.from_numpy(np.sort(idx))], data.class_names)
        return take(keep), take(held)

    if cfg.image_size is not None:
        full, test = resize(full, cfg.image_size), (resize(test, cfg.image_size) if test is not None else None)
    if test is None:
        full, test = split(full, cfg.test_fraction, cfg.split_seed)
    train, valid = split(full, cfg.valid_fraction, cfg.split_seed + 1)
    return train, valid, test


@TASKS.register("image_classification", help="supervised image classifier on a vision backbone")
class ImageClassification(Task):
    Config = ImageClassificationConfig
    supports_ddp = True
    best_metric = "eval/valid_accuracy"

    def __init__(self, config: ImageClassificationConfig, device: torch.device, run_dir: Path | None,
                 dist: Any) -> None:
        super().__init__(config, device, run_dir, dist)
        train, valid, test = load_splits(config.data)
        self.class_names = train.class_names
        self.splits = {"train": train, "valid": valid, "test": test}
        self.images = {k: v.images.to(device) for k, v in self.splits.items()}
        self.labels = {k: v.labels.to(device) for k, v in self.splits.items()}
        m = config.model
        spec: dict[str, Any] = {"name": m.name, **m.options, "in_chans": train.images.shape[1],
                                "num_classes": len(self.class_names), "input_size": tuple(train.images.shape[2:])}
        if m.layers is not None:
            spec = {"layers": m.layers, "in_chans": train.images.shape[1], "num_classes": len(self.class_names),
                    "input_size": tuple(train.images.shape[2:])}
        self.model = backbone_from_config(spec).to(device)
        if m.init_from:
            self._init_backbone(Path(m.init_from))
        self.batcher = EpochBatcher(len(train.labels), config.data.batch_size, config.seed, dist.rank,
                                    dist.world_size)
        a = config.data.augment
        self.augment = BatchAugment(a.crop_padding, a.hflip, a.max_rotate, a.max_translate)
        self.augment_generator = torch.Generator().manual_seed(config.seed + 7919 * dist.rank)
        self.last_confusion: np.ndarray | None = None

    def _init_backbone(self, run_dir: Path) -> None:
        """Copy every weight of another run's model except its classifier head (a new one fits our classes)."""
        source = ckpt.read_model_weights(ckpt.find_checkpoint(run_dir, "best"))
        own = self.model.state_dict()
        head = {k for k in own if k.startswith(("head.", "fc.", "classifier."))}
        taken = {k: v for k, v in source.items() if k in own and k not in head}
        mismatched = [k for k, v in taken.items() if v.shape != own[k].shape]
        if not taken or mismatched:
            raise LabError(f"model.init_from: '{run_dir}' has no backbone that fits this model "
                           f"({'shape mismatch at ' + mismatched[0] if mismatched else 'no shared weights'})")
        self.model.load_state_dict(taken, strict=False)
        self.pretrained = set(taken)

    def parameter_groups(self) -> list[dict[str, Any]]:
        m = self.config.model
        pretrained = getattr(self, "pretrained", set())
        named = [(n.removeprefix("module."), p) for n, p in self.model.named_parameters()]
        backbone = [p for n, p in named if n in pretrained]
        rest = [p for n, p in named if n not in pretrained]
        if m.freeze_backbone:
            for p in backbone:
                p.requires_grad_(False)
            return [{"params": rest}]
        groups = [{"params": rest}]
        if backbone:
            groups.append({"params": backbone, **({"lr": m.backbone_lr} if m.backbone_lr else {})})
        return groups

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255.0

    def train_step(self) -> StepOutput:
        index = self.batcher.next().to(self.device)
        images = self.augment(self.images["train"][index], self.augment_generator)
        labels = self.labels["train"][index]
        logits = self.model(self._inputs(images))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.config.model.label_smoothing)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return StepOutput(loss=loss, metrics={"accuracy": accuracy.detach(), "epoch": float(self.batcher.epoch)})

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits for a uint8 N×C×H×W tensor."""
        return torch.cat([self.model(self._inputs(images[i:i + batch_size].to(self.device))).float()
                          for i in range(0, len(images), batch_size)])

    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        results: dict[str, float] = {}
        for split in ("valid", "test"):
            logits = self.predict(self.images[split])
            labels = self.labels[split]
            results[f"{split}_loss"] = float(F.cross_entropy(logits, labels))
            results[f"{split}_accuracy"] = float((logits.argmax(1) == labels).float().mean())
            if split == "test":
                n = len(self.class_names)
                pairs = labels.cpu() * n + logits.argmax(1).cpu()
                self.last_confusion = torch.bincount(pairs, minlength=n * n).reshape(n, n).numpy()
        return results

    def log_media(self, tracker: Any, step: int) -> None:
        if self.run_dir is None or self.last_confusion is None:
            return
        path = plot_confusion(self.last_confusion, self.class_names, self.run_dir / "plots" / "confusion_matrix.png")
        tracker.log_image("eval/confusion_matrix", path, step)

    def state_dict(self) -> dict[str, Any]:
        return {"batcher": self.batcher.state_dict(), "augment_generator": self.augment_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batcher.load_state_dict(state["batcher"])
        restore_generator(self.augment_generator, state["augment_generator"], "augmentation")


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.45 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = range(len(class_names))
    long_names = len(class_names) > 12 or max(len(name) for name in class_names) > 3
    ax.set_xticks(ticks, class_names, rotation=90 if long_names else 0)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > matrix.max() / 2 else "black")
    ax.set_title(f"test accuracy {np.trace(matrix) / max(1, matrix.sum()):.3f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
