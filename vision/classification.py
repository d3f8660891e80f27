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
from lab.distributed import DistInfo
from lab.errors import LabError
from lab.registry import TASKS
from lab.seeding import restore_generator
from lab.task import StepOutput, Task
from vision import backbone_from_config
from vision.augment import BatchAugment
from vision.backbones.base import probe_classifier
from vision.datasets import ImageData, load_cifar10, load_digits, load_image_folder, load_mnist, to_channels
from vision.transfer import load_backbone, transferable


class AugmentConfig(Section):
    crop_padding: int = Field(0, ge=0)
    hflip: bool = False
    max_rotate: float = Field(0.0, ge=0)
    max_translate: float = Field(0.0, ge=0)


class ImageDataConfig(Section):
    source: Literal["digits", "mnist", "cifar10", "folder"] = "digits"
    path: str | None = Field(None, description="folder of the MNIST/CIFAR-10 files or the ImageFolder root")
    image_size: int | None = Field(32, gt=0, description="resize every image to this square size (None: keep)")
    channels: Literal[1, 3] | None = Field(None, description="1 (grey) or 3 (RGB), converted where the source "
                                           "differs; None: the source's own (digits, MNIST grey; CIFAR, folder RGB)")
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


SOURCE_SHAPES = {"digits": (1, 8, 10), "mnist": (1, 28, 10), "cifar10": (3, 32, 10)}  # channels, size, classes


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
        full, test = load_image_folder(cfg.path, cfg.image_size, cfg.channels or 3), None

    def split(data: ImageData, fraction: float, seed: int, name: str) -> tuple[ImageData, ImageData]:
        index = np.arange(len(data.labels))
        try:
            keep, held = train_test_split(index, test_size=fraction, random_state=seed,
                                          stratify=data.labels.numpy())
        except ValueError as error:  # too few images for every class to appear on both sides
            raise LabError(f"{len(index)} images in {len(data.class_names)} classes are too few to split off "
                           f"data.{name}={fraction} with every class on both sides ({error}); add images or "
                           f"change data.{name}") from None
        take = lambda idx: ImageData(data.images[torch.from_numpy(np.sort(idx))],  # noqa: E731
                                     data.labels[torch.from_numpy(np.sort(idx))], data.class_names)
        return take(keep), take(held)

    def prepare(data: ImageData) -> ImageData:
        data = to_channels(data, cfg.channels) if cfg.channels else data
        return resize(data, cfg.image_size) if cfg.image_size is not None else data

    full, test = prepare(full), (prepare(test) if test is not None else None)
    if test is None:
        full, test = split(full, cfg.test_fraction, cfg.split_seed, "test_fraction")
    train, valid = split(full, cfg.valid_fraction, cfg.split_seed + 1, "valid_fraction")
    return train, valid, test


def data_shape(cfg: ImageDataConfig) -> tuple[int, tuple[int, int], int]:
    """(channels, (H, W), classes) of the images a config trains on, without loading them: what `lab summary`
    needs to show the model the run builds."""
    if cfg.source == "folder":
        root = Path(cfg.path or "")
        if not root.is_dir():
            raise LabError(f"data.path '{cfg.path}' is not a folder: the classifier's size comes from its class "
                           "subfolders")
        classes = sum(1 for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if cfg.image_size is None:
            sample = load_image_folder(root, None, cfg.channels or 3).images
            return sample.shape[1], tuple(sample.shape[2:]), classes
        return cfg.channels or 3, (cfg.image_size, cfg.image_size), classes
    channels, size, classes = SOURCE_SHAPES[cfg.source]
    size = cfg.image_size or size
    return cfg.channels or channels, (size, size), classes


def model_spec(model: ImageModelConfig, channels: int, size: tuple[int, int], classes: int) -> dict[str, Any]:
    """The backbone spec of a run: its name or layer list and options, sized by the data."""
    set_by_data = sorted({"in_chans", "num_classes", "input_size"} & set(model.options))
    if set_by_data:
        raise LabError(f"model.options.{set_by_data[0]} is set by the data (here {channels} channels, "
                       f"{size[0]}×{size[1]} images, {classes} classes); remove it, or change data.channels / "
                       "data.image_size")
    network = {"layers": model.layers} if model.layers is not None else {"name": model.name}
    return {**network, **model.options, "in_chans": channels, "num_classes": classes, "input_size": list(size)}


@TASKS.register("image_classification", help="supervised image classifier on a vision backbone")
class ImageClassification(Task):
    Config = ImageClassificationConfig
    supports_ddp = True
    best_metric = "eval/valid_accuracy"

    def __init__(self, config: ImageClassificationConfig, device: torch.device, run_dir: Path | None,
                 dist: DistInfo) -> None:
        super().__init__(config, device, run_dir, dist)
        train, valid, test = load_splits(config.data)
        self.class_names = train.class_names
        self.splits = {"train": train, "valid": valid, "test": test}
        self.images = {k: v.images.to(device) for k, v in self.splits.items()}
        self.labels = {k: v.labels.to(device) for k, v in self.splits.items()}
        m = config.model
        self.model = backbone_from_config(model_spec(m, train.images.shape[1], tuple(train.images.shape[2:]),
                                                     len(self.class_names)))
        probe_classifier(self.model, len(self.class_names), m.name or "the layer list")
        self.model.to(device)
        # Transferred weights: copied here for a new run; a resumed or evaluated run loads its own checkpoint, so
        # it needs the source run no more.
        self.pretrained: set[str] = set()
        if m.init_from:
            own_checkpoint = ckpt.has_checkpoint(run_dir)
            self.pretrained = set(transferable(self.model)) if own_checkpoint else \
                load_backbone(self.model, Path(m.init_from))
        # A frozen backbone's batch norm keeps the source's statistics: in eval mode even while the head trains.
        self.frozen_norms = [module for name, module in self.model.named_modules()
                             if m.freeze_backbone and isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
                             and f"{name}.running_mean" in self.pretrained]
        self.batcher = EpochBatcher(len(train.labels), config.data.batch_size, config.seed, dist.rank,
                                    dist.world_size)
        a = config.data.augment
        self.augment = BatchAugment(a.crop_padding, a.hflip, a.max_rotate, a.max_translate)
        self.augment_generator = torch.Generator().manual_seed(config.seed + 7919 * dist.rank)
        self.last_confusion: np.ndarray | None = None

    @classmethod
    def upgrade_config(cls, data: dict[str, Any], run_format: int) -> dict[str, Any]:
        if run_format < 2 and isinstance(data.get("data"), dict) and data["data"].get("source", "digits") != "folder":
            data = {**data, "data": {**data["data"], "channels": None}}  # channels then meant an image folder's only
        return data

    def parameter_groups(self) -> list[dict[str, Any]]:
        m = self.config.model
        pretrained = self.pretrained
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
        for norm in self.frozen_norms:
            norm.eval()
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
