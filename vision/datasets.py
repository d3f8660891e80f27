"""Image data sets as whole tensors: `images` uint8 N×C×H×W, `labels` int64 N, `class_names` list of str.

Every loader reads local files only (nothing is downloaded):

- `load_digits()`: scikit-learn's bundled 8×8 digits, 1 channel, 0..16 scaled to 0..255.
- `load_mnist(root, split)`: MNIST (or Fashion-MNIST) IDX files, raw or gzipped, e.g. train-images-idx3-ubyte.gz.
- `load_cifar10(root, split)`: the CIFAR-10 python batches (data_batch_1 … test_batch, read by an unpickler that
  only admits numpy arrays) or the binary batches (data_batch_1.bin … test_batch.bin).
- `load_image_folder(root, image_size)`: one subfolder per class, any format PIL decodes (16-bit greyscale
  scaled, not clipped), resized to image_size.

Scale to float (e.g. `images.float() / 255`) on the device, batch by batch; keeping uint8 saves 4× memory.
"""
from __future__ import annotations

import gzip
import importlib
import io
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from lab.errors import LabError


class ImageData(NamedTuple):
    images: torch.Tensor  # uint8, N × C × H × W
    labels: torch.Tensor  # int64, N
    class_names: list[str]


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise LabError(f"split must be 'train' or 'test', got {split!r}")


# --- scikit-learn digits ----------------------------------------------------------------------------------------


def load_digits() -> ImageData:
    """The 1,797 8×8 handwritten digits bundled with scikit-learn (no split: take your own)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # pixel values are 0..16
    return ImageData(
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(digits.target).long(),
        [str(name) for name in digits.target_names],
    )


# --- MNIST: IDX files -------------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) → big-endian numpy dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (raw or gzipped) as a numpy array: magic 0 0 TYPE NDIM, NDIM big-endian uint32 sizes, data."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise LabError(f"{path}: broken gzip file ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise LabError(f"{path} is not an IDX file (its header is {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise LabError(f"{path}: IDX header is cut short")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    count = int(np.prod(shape))
    if len(data) - header != count * dtype.itemsize:
        raise LabError(f"{path}: IDX header says {shape} but the file holds {len(data) - header} data bytes")
    return np.frombuffer(data, dtype, count, header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, prefix: str, kind: str, dims: int) -> Path:
    names = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise LabError(f"no {kind} file for the {prefix} split in {root} (looked for {names[0]}[.gz] and {names[1]}[.gz])")


def load_mnist(root: str | Path, split: str = "train", class_names: Sequence[str] | None = None) -> ImageData:
    """MNIST-format IDX files in `root`; pass `class_names` for look-alikes such as Fashion-MNIST."""
    _check_split(split)
    root = Path(root)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx(root, prefix, "images", 3))
    labels = read_idx(_find_idx(root, prefix, "labels", 1))
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(images) != len(labels):
        raise LabError(f"{root}: expected N×H×W uint8 images and N labels, got {images.shape} and {labels.shape}")
    names = list(class_names) if class_names is not None else [str(d) for d in range(10)]
    if labels.size and labels.max() >= len(names):
        raise LabError(f"{root}: label {labels.max()} has no class name among {len(names)}")
    return ImageData(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), names)


# --- CIFAR-10 ---------------------------------------------------------------------------------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"

# Everything a pickled numpy array may reference; any other global in a pickle is refused.
_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other class or function.

    A pickle can call any importable function while loading; CIFAR batches need only the few above.
    """

    def __init__(self, file: io.BufferedIOBase, source: Path) -> None:
        super().__init__(file, encoding="bytes")  # the batches were pickled by Python 2
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ARRAY_GLOBALS:
            raise LabError(
                f"{self.source}: refusing to unpickle {module}.{name}; a CIFAR batch holds only numpy arrays and lists"
            )
        if module.startswith(("numpy.core.", "numpy._core.")):  # numpy 2 renamed numpy.core to numpy._core
            module = _NUMPY_CORE + module[module.index(".", len("numpy.")) :]
        return getattr(importlib.import_module(module), name)


def _unpickle(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        try:
            content = ArrayOnlyUnpickler(file, path).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise LabError(f"{path}: not a readable CIFAR batch ({error})") from None
    if not isinstance(content, dict):
        raise LabError(f"{path}: expected a dict in the pickle, got {type(content).__name__}")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in content.items()}


def _cifar_dir(root: Path) -> Path:
    for folder in (root, root / "cifar-10-batches-py", root / "cifar-10-batches-bin"):
        if (folder / "test_batch").is_file() or (folder / "test_batch.bin").is_file():
            return folder
    raise LabError(f"no CIFAR-10 batches in {root}: expected test_batch (python) or test_batch.bin (binary) there")


def _cifar_python(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise LabError(f"CIFAR-10 batch {path} is missing")
        batch = _unpickle(path)
        if "data" not in batch or "labels" not in batch:
            raise LabError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels', found {sorted(batch)}")
        data, batch_labels = np.asarray(batch["data"], dtype=np.uint8), np.asarray(batch["labels"], dtype=np.int64)
        if batch_labels.ndim != 1:
            raise LabError(f"{path}: 'labels' must be a list of class indices, got shape {batch_labels.shape}")
        if data.size != len(batch_labels) * 3 * 32 * 32:
            raise LabError(f"{path}: {len(batch_labels)} labels but {data.size} bytes of 3×32×32 images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = _unpickle(folder / "batches.meta")
        if "label_names" not in meta:
            raise LabError(f"{folder / 'batches.meta'}: expected 'label_names', found {sorted(meta)}; "
                           "fix or delete the file (the standard CIFAR-10 names are used without it)")
        names = meta["label_names"]
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return np.concatenate(images), np.concatenate(labels), classes


def _cifar_binary(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    record = 1 + 3 * 32 * 32  # label byte, then 1,024 red, green and blue bytes
    images, labels = [], []
    for name in names:
        path = folder / f"{name}.bin"
        if not path.is_file():
            raise LabError(f"CIFAR-10 batch {path} is missing")
        data = np.fromfile(path, dtype=np.uint8)
        if data.size % record:
            raise LabError(f"{path}: size {data.size} is not a multiple of the {record}-byte CIFAR-10 record")
        data = data.reshape(-1, record)
        labels.append(data[:, 0].astype(np.int64))
        images.append(data[:, 1:].reshape(-1, 3, 32, 32))
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        classes = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
    return np.concatenate(images), np.concatenate(labels), classes


def load_cifar10(root: str | Path, split: str = "train") -> ImageData:
    """CIFAR-10 from `root` (or its cifar-10-batches-py / -bin subfolder): 3×32×32 images, 10 classes."""
    _check_split(split)
    folder = _cifar_dir(Path(root))
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    read = _cifar_python if (folder / "test_batch").is_file() else _cifar_binary
    images, labels, classes = read(folder, names)
    if labels.size and labels.max() >= len(classes):
        raise LabError(f"{folder}: label {labels.max()} has no class name among {len(classes)}")
    return ImageData(torch.from_numpy(images.copy()), torch.from_numpy(labels), classes)


# --- any folder of images ---------------------------------------------------------------------------------------

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")


def load_image_folder(root: str | Path, image_size: int | Sequence[int] | None = 32, channels: int = 3) -> ImageData:
    """root/CLASS_NAME/**/image files → images resized to image_size (H, W), or kept at their own size when it is
    None (they must then share one); classes sorted by folder name."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise LabError(f"image folder {root} not found")
    if channels not in (1, 3):
        raise LabError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    size = None if image_size is None else (image_size, image_size) if isinstance(image_size, int) else image_size
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise LabError(f"{root} has no class subfolders (expected root/CLASS_NAME/image.png)")
    images, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(f for f in class_dir.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
        if not files:
            raise LabError(f"class folder {class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        for file in files:
            try:
                with Image.open(file) as image:
                    image = _to_8_bit(image).convert("RGB" if channels == 3 else "L")
                    if size is not None:
                        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                    pixels = np.asarray(image, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as error:
                raise LabError(f"cannot read image {file}: {error}") from None
            if images and pixels.shape[:2] != images[0].shape[1:]:
                first = "×".join(map(str, images[0].shape[1:]))
                raise LabError(f"{file} is {pixels.shape[0]}×{pixels.shape[1]} but earlier images are {first}: "
                               "set data.image_size to resize them all")
            images.append(pixels.reshape(*pixels.shape[:2], channels).transpose(2, 0, 1))
            labels.append(label)
    labels_tensor = torch.tensor(labels, dtype=torch.int64)
    return ImageData(torch.from_numpy(np.stack(images)), labels_tensor, [d.name for d in class_dirs])


def _to_8_bit(image: Any) -> Any:
    """16- and 32-bit integer greyscale images scaled to 8 bits (PIL's own conversion clips them to 255)."""
    from PIL import Image

    if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
        return image
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or pixels.max() <= 65535 else float(pixels.max())
    return Image.fromarray(np.rint(pixels * (255.0 / top)).clip(0, 255).astype(np.uint8), mode="L")


def to_channels(data: ImageData, channels: int) -> ImageData:
    """Grey images repeated to RGB, or RGB images to grey by their luma (ITU-R BT.601 weights)."""
    have = data.images.shape[1]
    if have == channels:
        return data
    if channels == 3 and have == 1:
        return ImageData(data.images.repeat(1, 3, 1, 1), data.labels, data.class_names)
    if channels == 1 and have == 3:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        grey = (data.images.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        return ImageData(grey, data.labels, data.class_names)
    raise LabError(f"cannot turn {have}-channel images into {channels} channels")
