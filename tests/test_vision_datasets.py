"""Image loaders on tiny fake files written to tmp_path (nothing is downloaded)."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lab.errors import LabError
from vision.datasets import load_cifar10, load_digits, load_image_folder, load_mnist, read_idx


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def fake_mnist(root: Path, prefix: str, n: int, compress: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
    write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return images, labels


def test_digits_are_scaled_to_uint8() -> None:
    images, labels, names = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and names == [str(d) for d in range(10)]
    assert images.max() == 255 and images.min() == 0


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_files(tmp_path: Path, compress: bool) -> None:
    train_images, train_labels = fake_mnist(tmp_path, "train", 5, compress)
    test_images, _ = fake_mnist(tmp_path, "t10k", 3, compress)
    images, labels, names = load_mnist(tmp_path, "train")
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], torch.from_numpy(train_images))
    assert torch.equal(labels, torch.from_numpy(train_labels).long()) and labels.dtype == torch.int64
    assert names == [str(d) for d in range(10)]
    assert torch.equal(load_mnist(tmp_path, "test").images[:, 0], torch.from_numpy(test_images))


def test_idx_reads_big_endian_ints(tmp_path: Path) -> None:
    values = (np.arange(6).reshape(2, 3) * 1000).astype(">i4")
    write_idx(tmp_path / "ints.idx", values, compress=False)
    assert read_idx(tmp_path / "ints.idx").tolist() == values.tolist()


def test_bad_idx_files_are_lab_errors(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x08\x03" + b"\x00" * 12)
    with pytest.raises(LabError, match="not an IDX file"):
        read_idx(tmp_path / "train-images-idx3-ubyte")
    write_idx(tmp_path / "short", np.zeros((2, 2), np.uint8), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-1])
    with pytest.raises(LabError, match="header says"):
        read_idx(tmp_path / "short")
    fake_mnist(tmp_path, "t10k", 2, False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(LabError, match="no labels file for the t10k split"):
        load_mnist(tmp_path, "test")


def fake_cifar_python(folder: Path, per_batch: int) -> list[np.ndarray]:
    folder.mkdir()
    batches = []
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        data = np.full((per_batch, 3072), i, dtype=np.uint8)
        data[:, 1024:2048] = 100  # the green plane
        batch = {b"batch_label": name.encode(), b"labels": [i % 10] * per_batch, b"data": data}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))  # the protocol of the real files
        batches.append(data)
    meta = {b"label_names": [f"class{c}".encode() for c in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def test_cifar10_python_batches(tmp_path: Path) -> None:
    fake_cifar_python(tmp_path / "cifar-10-batches-py", per_batch=2)
    images, labels, names = load_cifar10(tmp_path, "train")
    assert images.shape == (10, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert names[3] == "class3"
    assert images[2, 0, 0, 0] == 1 and images[2, 1, 5, 5] == 100  # channel-major rows: R plane, then G
    test = load_cifar10(tmp_path, "test")
    assert test.labels.tolist() == [5, 5]


class Exploit:
    def __reduce__(self):  # noqa: ANN204 - what a malicious pickle does: call a function on load
        return (print, ("this must never run",))


def test_cifar10_unpickler_refuses_anything_but_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_cifar_python(tmp_path / "cifar", per_batch=1)
    (tmp_path / "cifar" / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [0]}))
    with pytest.raises(LabError, match="refusing to unpickle builtins.print"):
        load_cifar10(tmp_path / "cifar", "test")
    assert "must never run" not in capsys.readouterr().out


def test_cifar10_arrays_pickled_by_current_numpy(tmp_path: Path) -> None:
    fake_cifar_python(tmp_path / "cifar", per_batch=1)
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    labels = np.array([7, 9])  # a numpy array instead of a list, pickled with the newest protocol
    (tmp_path / "cifar" / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=5))
    images, loaded_labels, _ = load_cifar10(tmp_path / "cifar", "test")
    assert loaded_labels.tolist() == [7, 9] and torch.equal(images.flatten(1), torch.from_numpy(data))


def test_cifar10_binary_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        records = np.zeros((3, 3073), dtype=np.uint8)
        records[:, 0] = [i, 9, 0]
        records[:, 1 + 2048 :] = 200  # blue plane
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"c{c}" for c in range(10)) + "\n\n")
    images, labels, names = load_cifar10(tmp_path, "train")
    assert images.shape == (15, 3, 32, 32) and labels[:3].tolist() == [0, 9, 0]
    assert names == [f"c{c}" for c in range(10)]
    assert images[:, 2].min() == 200 and images[:, :2].max() == 0


def test_cifar10_missing_files_are_lab_errors(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no CIFAR-10 batches"):
        load_cifar10(tmp_path)
    with pytest.raises(LabError, match="split must be"):
        load_cifar10(tmp_path, "validation")


def test_image_folder_resizes_and_labels_by_subfolder(tmp_path: Path) -> None:
    for name, colour in [("cat", (255, 0, 0)), ("dog", (0, 0, 255))]:
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (20 + i, 10), colour).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    images, labels, names = load_image_folder(tmp_path, image_size=(8, 6))
    assert images.shape == (4, 3, 8, 6) and images.dtype == torch.uint8
    assert names == ["cat", "dog"] and labels.tolist() == [0, 0, 1, 1]
    assert images[0, 0].min() == 255 and images[0, 2].max() == 0  # cats are red
    assert images[2, 2].min() == 255  # dogs are blue
    grey = load_image_folder(tmp_path, image_size=4, channels=1)
    assert grey.images.shape == (4, 1, 4, 4)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="no class subfolders"):
        load_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(LabError, match="cannot read image"):
        load_image_folder(tmp_path)


def test_malformed_cifar_batches_are_lab_errors(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    fake_cifar_python(folder, per_batch=2)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"names": []}, protocol=2))
    with pytest.raises(LabError, match="batches.meta: expected 'label_names', found \\['names'\\]"):
        load_cifar10(tmp_path, "test")
    (folder / "batches.meta").unlink()
    (folder / "test_batch").write_bytes(pickle.dumps({b"labels": 3, b"data": np.zeros(3072, np.uint8)}, protocol=2))
    with pytest.raises(LabError, match="'labels' must be a list of class indices"):
        load_cifar10(tmp_path, "test")


def test_image_folder_keeps_the_images_own_size_when_asked(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("L", (7, 5), 40).save(tmp_path / name / "0.png")
    data = load_image_folder(tmp_path, image_size=None, channels=1)
    assert data.images.shape == (2, 1, 5, 7)
    Image.new("L", (6, 5), 40).save(tmp_path / "b" / "1.png")
    with pytest.raises(LabError, match="is 5×6 but earlier images are 5×7: set data.image_size"):
        load_image_folder(tmp_path, image_size=None, channels=1)


def test_16_bit_images_are_scaled_not_clipped(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    deep = np.full((4, 4), 32896, dtype=np.uint16)  # 0x8080: the middle of the 16-bit range
    Image.fromarray(deep).save(tmp_path / "x" / "deep.png")
    assert Image.open(tmp_path / "x" / "deep.png").mode.startswith("I")
    grey = load_image_folder(tmp_path, image_size=None, channels=1).images
    assert grey.unique().tolist() == [128]
    assert load_image_folder(tmp_path, image_size=None, channels=3).images.unique().tolist() == [128]


def test_channel_conversion() -> None:
    from vision.datasets import ImageData, to_channels

    rgb = ImageData(torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1), torch.zeros(1).long(), ["a"])
    assert to_channels(rgb, 1).images.flatten().tolist() == [76]  # 0.299 · 255, red's luma
    grey = ImageData(torch.tensor([[[[9]]]], dtype=torch.uint8), torch.zeros(1).long(), ["a"])
    assert to_channels(grey, 3).images.flatten().tolist() == [9, 9, 9]
    assert to_channels(grey, 1) is grey
