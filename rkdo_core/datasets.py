"""Dataset facts, torch-free: the one home of every dataset's name, class count, stored
image size and display label.

:mod:`rkdo_core.data` reads the images; everything that only needs to *talk* about a
dataset (configuration checks, tables, figures, the claims checklist) imports this module,
so reporting and verification never pay torch's import.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetFacts:
    """What the suite knows about a dataset before reading any file.

    Attributes:
        name: registry name (``params`` files, run folders).
        num_classes: number of classes.
        image_size: default H == W of the stored images (pixels).
        label: display name in tables and figures.
        in_paper: whether the paper reports numbers on it (its tables' column order).
        train_images: images in the training split the encoder trains on (a full-pass
            "epoch" is ``train_images // batch_size`` optimizer steps).
        bundled: ships inside an installed package (no data root, no files to check), so
            a grid's data check need not load it (nor import torch).
    """

    name: str
    num_classes: int
    image_size: int
    label: str
    in_paper: bool
    train_images: int
    bundled: bool = False


DATASETS: dict[str, DatasetFacts] = {f.name: f for f in (
    # digits: the stratified 70 % of scikit-learn's 1797 (rkdo_core.data)
    DatasetFacts("digits", 10, 32, "digits", False, 1257, bundled=True),
    DatasetFacts("fashion_mnist", 10, 32, "Fashion-MNIST", False, 60000),
    DatasetFacts("cifar10", 10, 32, "CIFAR-10", True, 50000),
    DatasetFacts("cifar100", 100, 32, "CIFAR-100", True, 50000),
    DatasetFacts("stl10", 10, 64, "STL-10", True, 5000),
)}

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
#: the paper's datasets, in the order of its tables
PAPER_DATASETS: tuple[str, ...] = tuple(n for n, f in DATASETS.items() if f.in_paper)


def facts(name: str) -> DatasetFacts:
    """The facts of dataset ``name``; ``ValueError`` naming the allowed names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dataset {name!r}; allowed names: {', '.join(DATASET_NAMES)}") from None


def dataset_label(name: str) -> str:
    """Display label (``CIFAR-10``); unknown names are shown as they are."""
    f = DATASETS.get(name)
    return f.label if f else name


def n_classes(name: str) -> int | None:
    """Class count, or ``None`` for a name the registry does not know."""
    f = DATASETS.get(name)
    return f.num_classes if f else None


def dataset_order(datasets: Iterable[str]) -> list[str]:
    """The paper's datasets in its order, then the others sorted."""
    ds = set(datasets)
    return [d for d in PAPER_DATASETS if d in ds] + sorted(ds - set(PAPER_DATASETS))
