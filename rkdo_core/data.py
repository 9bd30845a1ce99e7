"""Dataset registry: every split is held as one ``uint8`` image tensor plus ``int64`` labels.

Datasets (DESIGN.md, "Real components"):

- ``digits``: scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes),
  shipped inside scikit-learn, so the suite works offline. A fixed stratified 70/30 split.
- ``cifar10``, ``cifar100``, ``stl10``: read by torchvision from a data root
  (``data_root`` argument, else ``$RKDO_DATA_ROOT``, else ``~/.cache/rkdo/data``),
  downloaded there when ``download=True`` and the network allows.

Whole splits live in memory as ``(N, 3, H, W)`` uint8 tensors (the layout fast CIFAR code
uses, e.g. cifar10-airbench), so augmentation can run batched on tensors without per-sample
PIL. When a dataset's files are missing or corrupt and cannot be downloaded,
:class:`DatasetUnavailableError` says which files, in which folder, and how to get them.
"""

from __future__ import annotations

import functools
import http.client
import os
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DATASET_NAMES: tuple[str, ...] = ("digits", "cifar10", "cifar100", "stl10")

DATA_ROOT_ENV = "RKDO_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("~/.cache/rkdo/data")

# The digits split is part of the dataset's definition, not of a run: it must not move
# with the run seed, or different seeds would be evaluated on different test images.
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.3

# Images resized per chunk so the float32 copy of a whole split (STL-10 train in float32
# is ~550 MB at 96×96) is never materialised at once.
_RESIZE_CHUNK = 512


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are missing or corrupt and could not be downloaded.

    The message names the dataset, the folder looked in, the files expected there, which of
    them are missing or fail their checksum, and how to obtain them. The original error is
    chained as ``__cause__``. A plain ``RuntimeError`` subclass with a single message
    argument, so it pickles across processes (the grid runs on Dask).
    """


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
    num_classes: int
    image_size: int  # default H == W of the stored images
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


def _spec(name: str) -> _DatasetSpec:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; allowed names: {', '.join(DATASET_NAMES)}") from None


def default_image_size(name: str) -> int:
    """Default H == W of the stored images: digits 32, cifar10 32, cifar100 32, stl10 64."""
    return _spec(name).image_size


def num_classes(name: str) -> int:
    """Number of classes: digits 10, cifar10 10, cifar100 100, stl10 10."""
    return _spec(name).num_classes


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
        data_root: folder holding the torchvision datasets (see :func:`resolve_data_root`);
            ignored for ``digits``, which ships with scikit-learn.
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
    spec = _spec(name)
    size = spec.image_size if image_size is None else _check_image_size(image_size)
    root = resolve_data_root(data_root) if spec.needs_root else None
    train, test = spec.load(root, download, size)
    return DatasetSplits(name=name, train=train, test=test,
                         num_classes=spec.num_classes, image_size=size)


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


def _torchvision_spec(source: _TorchvisionSource, num_classes_: int,
                      image_size: int) -> _DatasetSpec:
    return _DatasetSpec(num_classes=num_classes_, image_size=image_size,
                        load=functools.partial(_load_torchvision, source, num_classes_),
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

_REGISTRY: dict[str, _DatasetSpec] = {
    "digits": _DatasetSpec(num_classes=10, image_size=32, load=_load_digits, needs_root=False),
    "cifar10": _torchvision_spec(_CIFAR10, 10, 32),
    "cifar100": _torchvision_spec(_CIFAR100, 100, 32),
    "stl10": _torchvision_spec(_STL10, 10, 64),
}
assert tuple(_REGISTRY) == DATASET_NAMES
