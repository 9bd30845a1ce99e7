"""Dataset registry: every split is held as one ``uint8`` image tensor plus ``int64`` labels.

Datasets (docs/design.md, "Real components"):

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes),
  shipped inside scikit-learn, so the suite works offline. A fixed stratified 70/30 split.
- ``fashion_mnist``: Zalando's Fashion-MNIST (60,000 train / 10,000 test real 28×28 grey
  images, 10 classes), read from the four official IDX ``.gz`` files, found in the data
  root or where Debian's ``dataset-fashion-mnist`` package installs them
  (:func:`fashion_mnist_folders` gives the search order).
- ``cifar10``, ``cifar100``, ``stl10``: read by torchvision from a data root
  (``data_root`` argument, else ``$RKDO_DATA_ROOT``, else ``~/.cache/rkdo/data``),
  downloaded there when ``download=True`` and the network allows.

Which datasets exist, their class counts and default image sizes come from
:mod:`rkdo_core.datasets` (torch-free); this module only knows how to read each one.

Whole splits live in memory as ``(N, 3, H, W)`` uint8 tensors (the layout fast CIFAR code
uses, e.g. cifar10-airbench), so augmentation can run batched on tensors without per-sample
PIL. When a dataset's files are missing or corrupt and cannot be downloaded,
:class:`DatasetUnavailableError` says which files, in which folder, and how to get them.
"""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import http.client
import io
import os
import pickle
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# DATASET_NAMES is re-exported: config and other callers import it from this module.
from .datasets import DATASET_NAMES
from .datasets import facts as _facts
from .errors import DatasetUnavailableError

DATA_ROOT_ENV = "RKDO_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("~/.cache/rkdo/data")

# The digits split is part of the dataset's definition, not of a run: it must not move
# with the run seed, or different seeds would be evaluated on different test images.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.3

# Images resized per chunk so the float32 copy of a whole split (STL-10 train in float32
# is ~550 MB at 96×96) is never materialised at once.
_RESIZE_CHUNK = 512


@dataclass(frozen=True)
class Split:
    """One split of a dataset, whole in memory.

    Attributes:
        images: ``(N, 3, H, W)`` ``torch.uint8``, contiguous, channels-first, values 0..255.
        labels: ``(N,)`` ``torch.int64`` class indices in ``0..num_classes-1``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        im, lab = self.images, self.labels
        if im.dtype != torch.uint8 or im.ndim != 4 or im.shape[1] != 3:
            raise ValueError(
                f"Split.images must be a (N, 3, H, W) torch.uint8 tensor, "
                f"got dtype={im.dtype}, shape={tuple(im.shape)}")
        if not im.is_contiguous():
            raise ValueError("Split.images must be contiguous")
        if lab.dtype != torch.int64 or lab.ndim != 1 or lab.shape[0] != im.shape[0]:
            raise ValueError(
                f"Split.labels must be a (N,) torch.int64 tensor with N={im.shape[0]}, "
                f"got dtype={lab.dtype}, shape={tuple(lab.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's train and test splits.

    Attributes:
        name: registry key (one of :data:`DATASET_NAMES`).
        train, test: the splits; images ``(N, 3, image_size, image_size)`` uint8.
        num_classes: number of classes; labels lie in ``0..num_classes-1``.
        image_size: H == W of the stored images.
    """

    name: str
    train: Split
    test: Split
    num_classes: int
    image_size: int


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------

# (data_root or None, download, image_size) -> (train, test)
_Loader = Callable[[Path | None, bool, int], tuple[Split, Split]]


@dataclass(frozen=True)
class _DatasetSpec:
    """How to read one dataset (its facts live in :mod:`rkdo_core.datasets`)."""

    load: _Loader
    needs_root: bool  # whether the data root is consulted at all


@dataclass(frozen=True)
class _TorchvisionSource:
    """How one torchvision dataset lies on disk and how to read it into tensors."""

    name: str
    class_name: str  # attribute of torchvision.datasets
    base_folder: str  # the folder the official archive extracts to, inside the data root
    files: tuple[str, ...]  # every file of the archive torchvision reads or checks
    url: str  # official archive; extracting it into the data root yields base_folder/
    split_kwargs: Callable[[str], dict[str, Any]]  # "train"/"test" -> constructor kwargs
    labels_attr: str
    channels_last: bool  # whether the dataset's .data array is (N, H, W, C)


def _check_image_size(image_size: Any) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return image_size


def default_image_size(name: str) -> int:
    """Default H == W of the stored images: digits 32, fashion_mnist 32, cifar10 32,
    cifar100 32, stl10 64. ``ValueError`` naming the allowed names for an unknown one."""
    return _facts(name).image_size


def num_classes(name: str) -> int:
    """Number of classes: digits 10, fashion_mnist 10, cifar10 10, cifar100 100, stl10 10.
    ``ValueError`` naming the allowed names for an unknown one."""
    return _facts(name).num_classes


def resolve_data_root(data_root: str | os.PathLike[str] | None = None) -> Path:
    """The absolute data root: ``data_root`` if given, else ``$RKDO_DATA_ROOT`` if set and
    non-empty, else ``~/.cache/rkdo/data``. Nothing is created on disk."""
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return Path(data_root).expanduser().resolve()


def load_dataset(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    download: bool = True,
    image_size: int | None = None,
) -> DatasetSplits:
    """Load a dataset's train and test splits as uint8 tensors.

    Args:
        name: one of :data:`DATASET_NAMES`.
        data_root: folder holding the downloaded datasets (see :func:`resolve_data_root`);
            ignored for ``digits``, which ships with scikit-learn. ``fashion_mnist`` also
            looks in Debian's folder after it (see :func:`fashion_mnist_folders`).
        download: let torchvision download missing files; ignored for ``digits``.
        image_size: H == W of the returned images; ``None`` -> :func:`default_image_size`.
            Images are resized with bilinear interpolation (antialiased when shrinking).

    Returns:
        :class:`DatasetSplits` with images ``(N, 3, image_size, image_size)`` uint8 and
        labels ``(N,)`` int64.

    Raises:
        ValueError: unknown ``name`` or invalid ``image_size``.
        DatasetUnavailableError: files missing or corrupt and not downloadable.
    """
    facts = _facts(name)
    spec = _REGISTRY[name]
    size = facts.image_size if image_size is None else _check_image_size(image_size)
    root = resolve_data_root(data_root) if spec.needs_root else None
    train, test = spec.load(root, download, size)
    return DatasetSplits(name=name, train=train, test=test,
                         num_classes=facts.num_classes, image_size=size)


# --------------------------------------------------------------------------------------
# shared tensor helpers
# --------------------------------------------------------------------------------------

def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` uint8 to ``(N, C, size, size)`` uint8, contiguous.

    Bilinear with ``antialias=True``: when shrinking (STL-10 96 -> 64) plain bilinear would
    alias; when enlarging antialias changes nothing. Done in float32 in chunks, then
    rounded and clamped back to 0..255.
    """
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images.contiguous()
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    for start in range(0, n, _RESIZE_CHUNK):
        chunk = images[start:start + _RESIZE_CHUNK].to(torch.float32)
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True)
        out[start:start + _RESIZE_CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


# --------------------------------------------------------------------------------------
# digits (embedded)
# --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _digits_splits_cached(image_size: int) -> tuple[Split, Split]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    raw = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    scaled = torch.from_numpy(np.rint(raw * (255.0 / 16.0)).astype(np.uint8))
    gray = _resize_uint8(scaled.unsqueeze(1), image_size)  # (N, 1, S, S)
    # Grey replicated to RGB so every dataset feeds the same 3-channel encoder.
    images = gray.expand(-1, 3, -1, -1).contiguous()

    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION, stratify=labels,
        random_state=DIGITS_SPLIT_SEED)
    lab = torch.from_numpy(labels)

    def take(idx: np.ndarray) -> Split:
        t = torch.from_numpy(idx)
        return Split(images=images[t].contiguous(), labels=lab[t].contiguous())

    return take(idx_train), take(idx_test)


def _load_digits(_root: Path | None, _download: bool, image_size: int) -> tuple[Split, Split]:
    # The cache holds the computed tensors; callers get copies so an in-place edit by one
    # caller (e.g. a normalisation done in place) cannot leak into the next call.
    train, test = _digits_splits_cached(image_size)
    return (Split(train.images.clone(), train.labels.clone()),
            Split(test.images.clone(), test.labels.clone()))


# --------------------------------------------------------------------------------------
# torchvision datasets
# --------------------------------------------------------------------------------------

# What torchvision and the unpickler raise when files are missing (RuntimeError "Dataset
# not found or corrupted"), truncated (EOFError, UnpicklingError, ValueError from reshape),
# or the download fails (URLError and other OSErrors, HTTP protocol errors, bad archives).
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError,
    pickle.UnpicklingError, tarfile.TarError, http.client.HTTPException,
)


def _torchvision_class(source: _TorchvisionSource) -> Any:
    import torchvision.datasets  # deferred: importing torchvision costs ~1 s

    return getattr(torchvision.datasets, source.class_name)


def _expected_md5s(source: _TorchvisionSource) -> dict[str, str]:
    """File name -> md5 exactly as the installed torchvision class checks them."""
    cls = _torchvision_class(source)
    md5s = {fname: md5 for fname, md5 in list(cls.train_list) + list(cls.test_list)}
    meta = getattr(cls, "meta", None)
    if isinstance(meta, dict) and "filename" in meta and "md5" in meta:
        md5s[meta["filename"]] = meta["md5"]
    return md5s


def _unavailable_message(source: _TorchvisionSource, root: Path, download: bool,
                         cause: BaseException | None, problem: str | None = None) -> str:
    """The error text: dataset, folder, expected files, missing/corrupt ones, how to fix."""
    from torchvision.datasets.utils import check_integrity

    folder = root / source.base_folder
    md5s = _expected_md5s(source)
    missing = [f for f in source.files if not (folder / f).is_file()]
    # Only on this error path, so reading the files to hash them costs nothing normally.
    corrupt = [f for f in source.files
               if f not in missing and f in md5s and not check_integrity(str(folder / f), md5s[f])]
    lines = [
        f"Dataset {source.name!r} is not available under the data root {root}.",
        f"Looked in folder: {folder}",
        f"Expected files there: {', '.join(source.files)}",
        f"Missing: {', '.join(missing) if missing else 'none'}",
        f"Present but corrupt (md5 mismatch, e.g. truncated): "
        f"{', '.join(corrupt) if corrupt else 'none'}",
    ]
    if problem is not None:
        lines.append(f"Problem: {problem}")
    # torchvision only downloads when its md5 check fails, so a download was tried exactly
    # when some checksummed file was missing or corrupt.
    if download and (corrupt or any(f in md5s for f in missing)):
        lines.append(f"Downloading {source.url} was attempted and failed (no network access, "
                     f"or a damaged download; see the underlying error).")
    retry = ("retry where the network is reachable" if download
             else "call with download=True where the network is reachable")
    lines.append(
        f"To obtain it: download {source.url} and extract it into {root} (it unpacks to "
        f"{source.base_folder}/); or {retry}; or point {DATA_ROOT_ENV} / --data-root at a "
        f"folder that already holds {source.base_folder}/.")
    if cause is not None:
        lines.append(f"Underlying error: {type(cause).__name__}: {cause}")
    return "\n".join(lines)


def _read_torchvision_split(source: _TorchvisionSource, root: Path, split: str,
                            download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as torchvision reads it: images ``(N, 3, H, W)`` uint8 (possibly a
    non-contiguous view), labels ``(N,)`` int64."""
    cls = _torchvision_class(source)
    try:
        ds = cls(root=str(root), download=download, **source.split_kwargs(split))
    except _UNAVAILABLE_ERRORS as e:
        raise DatasetUnavailableError(_unavailable_message(source, root, download, e)) from e
    data = torch.from_numpy(np.asarray(ds.data, dtype=np.uint8))
    images = data.permute(0, 3, 1, 2) if source.channels_last else data
    labels = torch.from_numpy(np.asarray(getattr(ds, source.labels_attr), dtype=np.int64))
    return images, labels


def _load_torchvision(source: _TorchvisionSource, num_classes_: int, root: Path | None,
                      download: bool, image_size: int) -> tuple[Split, Split]:
    assert root is not None  # needs_root=True in the registry
    splits = []
    for split in ("train", "test"):
        images, labels = _read_torchvision_split(source, root, split, download)
        # Checksums pass for the official files, so these only trip on files that were
        # replaced wholesale (e.g. STL-10 labels written 0-based, which wrap to 255).
        bad = (images.ndim != 4 or images.shape[1] != 3 or labels.shape != (images.shape[0],)
               or (labels.numel() > 0 and (labels.min() < 0 or labels.max() >= num_classes_)))
        if bad:
            raise DatasetUnavailableError(_unavailable_message(
                source, root, download, None,
                problem=f"the {split} split read as images {tuple(images.shape)} with labels "
                        f"{tuple(labels.shape)}; expected one label per image, each in "
                        f"0..{num_classes_ - 1}"))
        splits.append(Split(images=_resize_uint8(images, image_size), labels=labels))
    return splits[0], splits[1]


def _torchvision_spec(source: _TorchvisionSource) -> _DatasetSpec:
    return _DatasetSpec(
        load=functools.partial(_load_torchvision, source, _facts(source.name).num_classes),
        needs_root=True)


def _cifar_split_kwargs(split: str) -> dict[str, Any]:
    return {"train": split == "train"}


def _stl10_split_kwargs(split: str) -> dict[str, Any]:
    return {"split": split}


_CIFAR10 = _TorchvisionSource(
    name="cifar10", class_name="CIFAR10", base_folder="cifar-10-batches-py",
    files=("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
           "test_batch", "batches.meta"),
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    split_kwargs=_cifar_split_kwargs, labels_attr="targets", channels_last=True)

_CIFAR100 = _TorchvisionSource(
    name="cifar100", class_name="CIFAR100", base_folder="cifar-100-python",
    files=("train", "test", "meta"),
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    split_kwargs=_cifar_split_kwargs, labels_attr="targets", channels_last=True)

# torchvision's STL10 integrity check covers unlabeled_X.bin even when only the labelled
# train/test splits are read, so it is listed: without it the loader refuses to start.
_STL10 = _TorchvisionSource(
    name="stl10", class_name="STL10", base_folder="stl10_binary",
    files=("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin",
           "class_names.txt"),
    url="http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    split_kwargs=_stl10_split_kwargs, labels_attr="labels", channels_last=False)

# --------------------------------------------------------------------------------------
# Fashion-MNIST (official IDX files, read here with gzip + numpy)
# --------------------------------------------------------------------------------------

#: Where Debian's ``dataset-fashion-mnist`` package installs the four files; searched after
#: the data root (a module constant so tests can point it elsewhere).
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The mirror torchvision's ``FashionMNIST`` downloads the official files from (each file is
#: this URL + its name); the dataset's home page lists the same files.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_HOME = "https://github.com/zalandoresearch/fashion-mnist"
#: torchvision's folder for it inside a data root (``<root>/FashionMNIST/raw``).
_FASHION_TORCHVISION_FOLDER = Path("FashionMNIST") / "raw"

# IDX format (Zalando's README, after LeCun's MNIST page): big-endian uint32 fields, then
# the bytes. The magic 0x00000803 = 2051 is "unsigned byte, 3 dimensions" (count, rows,
# cols: a 16-byte header); 0x00000801 = 2049 "unsigned byte, 1 dimension" (count: 8 bytes).
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_FASHION_SIDE = 28


@dataclass(frozen=True)
class _IdxFile:
    """One official Fashion-MNIST file and what it must hold."""

    name: str
    split: str  # "train" / "test"
    magic: int  # _IDX_IMAGES_MAGIC or _IDX_LABELS_MAGIC
    official_count: int  # items in the official file
    gz_md5: str  # md5 of the official .gz (Zalando's list = torchvision's FashionMNIST.resources)
    idx_md5: str  # md5 of its decompressed content (the IDX bytes themselves)

    @property
    def header_len(self) -> int:
        return 16 if self.magic == _IDX_IMAGES_MAGIC else 8

    @property
    def kind(self) -> str:
        return "images" if self.magic == _IDX_IMAGES_MAGIC else "labels"


# Checksums. The .gz md5s are those torchvision's FashionMNIST.resources and Zalando's README
# list. Debian's package ships the same data re-compressed (its packaging rewrites the gzip
# header: no file name, a fixed time stamp), so its .gz md5s differ; the md5s of the
# decompressed bytes are the same for both, and are what a re-compressed copy is checked by.
_FASHION_FILES: tuple[_IdxFile, ...] = (
    _IdxFile("train-images-idx3-ubyte.gz", "train", _IDX_IMAGES_MAGIC, 60_000,
             "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    _IdxFile("train-labels-idx1-ubyte.gz", "train", _IDX_LABELS_MAGIC, 60_000,
             "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    _IdxFile("t10k-images-idx3-ubyte.gz", "test", _IDX_IMAGES_MAGIC, 10_000,
             "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    _IdxFile("t10k-labels-idx1-ubyte.gz", "test", _IDX_LABELS_MAGIC, 10_000,
             "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
)
FASHION_MNIST_FILES: tuple[str, ...] = tuple(f.name for f in _FASHION_FILES)

# Read chunk when decompressing: memory follows the bytes actually in the file, never a
# count announced by a (possibly damaged) header.
_GZIP_READ_CHUNK = 1 << 22


class _IdxFileError(ValueError):
    """One Fashion-MNIST file is unreadable or not what it must be; ``file`` names it."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file}: {reason}")
        self.file = file
        self.reason = reason


@dataclass(frozen=True)
class _IdxData:
    """A validated IDX file: ``values`` is ``(count, 28, 28)`` or ``(count,)`` uint8;
    ``checksum`` says how it was verified: ``"gz"`` (the official .gz md5), ``"content"``
    (the md5 of the decompressed bytes: a re-compressed official file, e.g. Debian's), or
    ``None`` (not the official item count, so not the official file: structure only)."""

    values: np.ndarray
    checksum: str | None


def fashion_mnist_folders(root: Path) -> tuple[Path, ...]:
    """Where ``fashion_mnist`` looks for its four files, in this order:

    1. ``<root>/fashion_mnist/`` (the suite's own folder, named after the dataset),
    2. ``<root>/FashionMNIST/raw/`` (torchvision's layout: where ``download=True`` puts them),
    3. ``<root>/`` itself,
    4. :data:`FASHION_MNIST_DEBIAN_DIR` (``apt-get install dataset-fashion-mnist``).

    ``root`` is the resolved data root (:func:`resolve_data_root`). The first folder that
    holds all four files is used; a folder with only some of them is passed over. If the
    used folder's files are damaged the load fails with an error naming them, rather than
    silently reading another copy. Duplicates (a data root that is the Debian folder) are
    listed once.
    """
    folders = (root / "fashion_mnist", root / _FASHION_TORCHVISION_FOLDER, root,
               Path(FASHION_MNIST_DEBIAN_DIR))
    return tuple(dict.fromkeys(folders))


def _complete_fashion_folder(folders: tuple[Path, ...]) -> Path | None:
    for folder in folders:
        if all((folder / f).is_file() for f in FASHION_MNIST_FILES):
            return folder
    return None


def _read_gzip_payload(spec: _IdxFile, raw: bytes) -> tuple[bytes, bytearray]:
    """Decompress ``raw``: (the header bytes, everything after them). The header is shorter
    than ``spec.header_len`` (and the payload empty) when the stream ends early."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
            header = gz.read(spec.header_len)
            if len(header) < spec.header_len:
                return header, bytearray()
            (count,) = struct.unpack(">I", header[4:8])
            # Stops one chunk past what the header announces: enough to tell "too long".
            expected = count * (_FASHION_SIDE ** 2 if spec.magic == _IDX_IMAGES_MAGIC else 1)
            payload = bytearray()
            while len(payload) <= expected:
                chunk = gz.read(_GZIP_READ_CHUNK)
                if not chunk:
                    break
                payload += chunk
    except (EOFError, OSError, zlib.error) as e:  # BadGzipFile is an OSError
        raise _IdxFileError(spec.name, (
            f"not a complete gzip file (truncated or damaged .gz): "
            f"{type(e).__name__}: {e}")) from e
    return header, payload


def _read_idx(path: Path, spec: _IdxFile, num_classes_: int) -> _IdxData:
    """Read and validate one Fashion-MNIST IDX ``.gz`` file.

    Checks, each failure an :class:`_IdxFileError` naming the file, the value found and the
    value allowed: a readable gzip stream; the magic number (2051 images, 2049 labels); at
    least one item; images 28×28; exactly as many data bytes as the header announces (fewer:
    truncated; more: trailing data); labels in ``0..num_classes_-1``; and, when the header
    announces the official count (60,000 train / 10,000 test), the official checksum: the
    .gz md5 or, for a re-compressed copy, the md5 of the decompressed bytes. Files with any
    other count are not the official files (test fixtures, hand-made subsets) and are
    checked for structure only.
    """
    raw = path.read_bytes()
    header, payload = _read_gzip_payload(spec, raw)
    magic = struct.unpack(">I", header[:4])[0] if len(header) >= 4 else None
    if magic is not None and magic != spec.magic:
        other = {_IDX_IMAGES_MAGIC: "an IDX images file", _IDX_LABELS_MAGIC: "an IDX labels file"}
        seen = f" ({other[magic]})" if magic in other else ""
        raise _IdxFileError(spec.name, (
            f"wrong magic number {magic}{seen}; expected {spec.magic} (IDX unsigned-byte "
            f"{spec.kind}, {3 if spec.kind == 'images' else 1} dimension(s))"))
    if len(header) < spec.header_len:
        raise _IdxFileError(spec.name, (
            f"truncated: it decompresses to {len(header)} bytes, fewer than the "
            f"{spec.header_len}-byte IDX {spec.kind} header"))
    (count,) = struct.unpack(">I", header[4:8])
    if count < 1:
        raise _IdxFileError(spec.name, f"its header announces {count} {spec.kind}; "
                                       f"expected at least 1")
    shape: tuple[int, ...] = (count,)
    if spec.magic == _IDX_IMAGES_MAGIC:
        rows, cols = struct.unpack(">II", header[8:16])
        if (rows, cols) != (_FASHION_SIDE, _FASHION_SIDE):
            raise _IdxFileError(spec.name, (
                f"images are {rows}×{cols} pixels; expected "
                f"{_FASHION_SIDE}×{_FASHION_SIDE}"))
        shape = (count, rows, cols)
    expected = int(np.prod(shape))
    if len(payload) != expected:
        what = "truncated" if len(payload) < expected else "longer than its header announces"
        held = (f"{len(payload)}" if len(payload) <= expected
                else f"at least {len(payload)}")
        items = (f"{count} images of {_FASHION_SIDE}×{_FASHION_SIDE}"
                 if spec.magic == _IDX_IMAGES_MAGIC else f"{count} labels")
        raise _IdxFileError(spec.name, (
            f"{what}: the header announces {items} ({expected} bytes after the "
            f"{spec.header_len}-byte header); the file holds {held}"))
    checksum = None
    if count == spec.official_count:
        gz_md5 = hashlib.md5(raw).hexdigest()
        if gz_md5 == spec.gz_md5:
            checksum = "gz"
        else:
            content = hashlib.md5(header)
            content.update(payload)
            if content.hexdigest() != spec.idx_md5:
                raise _IdxFileError(spec.name, (
                    f"checksum mismatch: it holds the official count of {count} {spec.kind}, "
                    f"but its .gz md5 is {gz_md5} (official: {spec.gz_md5}) and the md5 of "
                    f"its decompressed bytes is {content.hexdigest()} (official: "
                    f"{spec.idx_md5})"))
            checksum = "content"
    values = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
    if spec.magic == _IDX_LABELS_MAGIC:
        bad = np.flatnonzero(values >= num_classes_)
        if bad.size:
            raise _IdxFileError(spec.name, (
                f"{bad.size} label(s) outside 0..{num_classes_ - 1}, e.g. "
                f"{int(values[bad[0]])} at index {int(bad[0])}"))
    return _IdxData(values=values, checksum=checksum)


def _read_fashion_folder(folder: Path, num_classes_: int) -> dict[str, _IdxData]:
    """All four files of ``folder``, validated, by file name. Every problem found is
    collected; they are raised together as one :class:`_FashionCorruptError`."""
    read: dict[str, _IdxData] = {}
    problems: list[_IdxFileError] = []
    for spec in _FASHION_FILES:
        try:
            read[spec.name] = _read_idx(folder / spec.name, spec, num_classes_)
        except _IdxFileError as e:
            problems.append(e)
        except OSError as e:  # unreadable (permissions, I/O error)
            err = _IdxFileError(spec.name, f"cannot be read: {type(e).__name__}: {e}")
            err.__cause__ = e
            problems.append(err)
    for split in ("train", "test"):
        im, lab = (s for s in _FASHION_FILES if s.split == split)
        if im.name in read and lab.name in read:
            n_im, n_lab = len(read[im.name].values), len(read[lab.name].values)
            if n_im != n_lab:
                problems.append(_IdxFileError(f"{im.name} and {lab.name}", (
                    f"inconsistent counts: {n_im} images but {n_lab} labels; the {split} "
                    f"split needs one label per image")))
    if problems:
        raise _FashionCorruptError(problems)
    return read


class _FashionCorruptError(ValueError):
    """Some Fashion-MNIST files failed their checks; ``problems`` holds each one."""

    def __init__(self, problems: list[_IdxFileError]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


@functools.lru_cache(maxsize=2)
def _fashion_grey_cached(folder: Path, _stamp: tuple[tuple[int, int, int], ...],
                         image_size: int) -> tuple[torch.Tensor, ...]:
    """(train grey, train labels, test grey, test labels) of ``folder``'s files: grey
    images ``(N, 1, S, S)`` uint8 already resized, labels ``(N,)`` int64.

    Cached because resizing 60,000 images takes seconds; the grey single channel is what is
    kept (a third of the RGB split), the caller's 3 channels are built per call. ``_stamp``
    (size, mtime, inode of each file) makes a replaced file a new cache entry.
    """
    read = _read_fashion_folder(folder, _facts("fashion_mnist").num_classes)
    out = []
    for split in ("train", "test"):
        im, lab = (s for s in _FASHION_FILES if s.split == split)
        grey = torch.from_numpy(read[im.name].values).unsqueeze(1)  # (N, 1, 28, 28)
        out.append(_resize_uint8(grey, image_size))
        out.append(torch.from_numpy(read[lab.name].values.astype(np.int64)))
    return tuple(out)


def _file_stamp(folder: Path) -> tuple[tuple[int, int, int], ...]:
    stats = [(folder / f).stat() for f in FASHION_MNIST_FILES]
    return tuple((st.st_size, st.st_mtime_ns, st.st_ino) for st in stats)


def _download_fashion_mnist(root: Path) -> None:
    """torchvision's ``FashionMNIST(root, download=True)``: fetches the four official files
    from :data:`FASHION_MNIST_URL` into ``<root>/FashionMNIST/raw/`` (keeping the .gz
    files next to their extracted copies) and checks their md5s. The test split is asked
    for because torchvision then reads one split, and that one is smaller."""
    import torchvision.datasets  # deferred: importing torchvision costs ~1 s

    torchvision.datasets.FashionMNIST(root=str(root), train=False, download=True)


def _fashion_unavailable_message(
    root: Path, folders: tuple[Path, ...], download_tried: bool, download: bool,
    cause: BaseException | None, used: Path | None = None,
    problems: list[_IdxFileError] | None = None,
) -> str:
    """The error text: dataset, every folder looked in, the four files, which are missing
    (per folder) or corrupt and why, and how to obtain them."""
    lines = [
        (f"Dataset 'fashion_mnist' is not available: no folder holds all four of its files "
         f"(data root {root})." if used is None else
         f"Dataset 'fashion_mnist': the files in {used} are damaged or not the official ones "
         f"(data root {root})."),
        f"Looked in folders (in this order): {', '.join(map(str, folders))}",
        f"Expected files (all four in one folder): {', '.join(FASHION_MNIST_FILES)}",
    ]
    if used is None:
        for folder in folders:
            missing = [f for f in FASHION_MNIST_FILES if not (folder / f).is_file()]
            lines.append(f"Missing in {folder}: {', '.join(missing)}")
    else:
        bad = list(dict.fromkeys(
            f for p in problems or () for f in FASHION_MNIST_FILES if f in p.file))
        lines.append(f"Used folder: {used} (the first that holds all four files)")
        lines.append(f"Present but corrupt: {', '.join(bad)}")
        lines.extend(f"Problem: {p}" for p in problems or ())
    torchvision_way = (f"torchvision's FashionMNIST(root, download=True) fetching "
                       f"{FASHION_MNIST_URL}<file> into {root / _FASHION_TORCHVISION_FOLDER}")
    if download_tried and used is None:
        lines.append(f"Downloading with {torchvision_way} was attempted and failed (no "
                     f"network access, or a damaged download; see the underlying error).")
    retry = ("retry where the network is reachable" if download
             else "call with download=True where the network is reachable")
    replace = (f"delete or replace the damaged files in {used}, then get them again: "
               if used is not None else "")
    reinstall = (" (apt-get install --reinstall dataset-fashion-mnist for a damaged Debian "
                 "copy)" if used is not None and used == Path(FASHION_MNIST_DEBIAN_DIR) else "")
    lines.append(
        f"To obtain them: {replace}`apt-get install dataset-fashion-mnist` (Debian's package; "
        f"installs the four files in {FASHION_MNIST_DEBIAN_DIR}/){reinstall}; or {retry} "
        f"({torchvision_way}); or download the four files yourself from {FASHION_MNIST_URL} "
        f"(each file is that URL + its name; listed on {FASHION_MNIST_HOME}) into "
        f"{root / 'fashion_mnist'}; or point {DATA_ROOT_ENV} / --data-root at a folder that "
        f"already holds them.")
    if cause is not None:
        lines.append(f"Underlying error: {type(cause).__name__}: {cause}")
    return "\n".join(lines)


def _load_fashion_mnist(root: Path | None, download: bool,
                        image_size: int) -> tuple[Split, Split]:
    """Fashion-MNIST as ``(N, 3, S, S)`` uint8 splits (grey replicated to 3 channels, resized
    28 -> S by :func:`_resize_uint8` as digits are), labels int64 in ``0..9``.

    The files are searched as :func:`fashion_mnist_folders` says. When none holds all four
    and ``download`` is true, torchvision downloads them into ``<root>/FashionMNIST/raw/``
    (the second folder searched); files present but damaged are never re-downloaded over.
    """
    assert root is not None  # needs_root=True in the registry
    folders = fashion_mnist_folders(root)
    folder = _complete_fashion_folder(folders)
    download_tried = False
    cause: BaseException | None = None
    if folder is None and download:
        download_tried = True
        try:
            _download_fashion_mnist(root)
        except _UNAVAILABLE_ERRORS as e:
            cause = e
        folder = _complete_fashion_folder(folders)
    if folder is None:
        message = _fashion_unavailable_message(root, folders, download_tried, download, cause)
        if cause is None:  # nothing failed but the search: chain what the search found
            cause = FileNotFoundError(
                errno.ENOENT, "no folder holds all four Fashion-MNIST files: "
                + ", ".join(map(str, folders)))
        raise DatasetUnavailableError(message) from cause
    try:
        stamp = _file_stamp(folder)
    except OSError as e:  # a file vanished between the search and now
        raise DatasetUnavailableError(_fashion_unavailable_message(
            root, folders, download_tried, download, e)) from e
    try:
        train_grey, train_labels, test_grey, test_labels = _fashion_grey_cached(
            folder, stamp, image_size)
    except _FashionCorruptError as e:  # the message lists e.problems, its whole text
        raise DatasetUnavailableError(_fashion_unavailable_message(
            root, folders, download_tried, download, None, used=folder,
            problems=e.problems)) from e
    # One RGB copy per call, built straight from the cached grey: the caller may edit it in
    # place without touching the cache or anyone else's copy.
    return (Split(train_grey.expand(-1, 3, -1, -1).contiguous(), train_labels.clone()),
            Split(test_grey.expand(-1, 3, -1, -1).contiguous(), test_labels.clone()))


_REGISTRY: dict[str, _DatasetSpec] = {
    "digits": _DatasetSpec(load=_load_digits, needs_root=False),
    "fashion_mnist": _DatasetSpec(load=_load_fashion_mnist, needs_root=True),
    "cifar10": _torchvision_spec(_CIFAR10),
    "cifar100": _torchvision_spec(_CIFAR100),
    "stl10": _torchvision_spec(_STL10),
}
# Every dataset the facts name can be read, and nothing else: same names, same order.
assert tuple(_REGISTRY) == DATASET_NAMES
# the facts' "bundled" (read by the grid's torch-free data check) is the registry's no-root
assert all(_REGISTRY[n].needs_root != _facts(n).bundled for n in DATASET_NAMES)
