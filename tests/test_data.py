"""Dataset registry: digits values and split, and the real torchvision loaders run on
miniature files written in the datasets' exact on-disk formats (all offline)."""

import hashlib
import pickle
import re
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from rkdo_core import data as D
from rkdo_core.data import (
    DatasetSplits,
    DatasetUnavailableError,
    Split,
    default_image_size,
    load_dataset,
    num_classes,
    resolve_data_root,
)
from rkdo_core.datasets import DATASET_NAMES

URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "stl10": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
}
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
           "stl10": "stl10_binary"}
TV_CLASSES = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "stl10": tvd.STL10}


# ---------------------------------------------------------------------------------------
# writers for the real on-disk formats
# ---------------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Pickles the way the CIFAR files were written (Python 2, protocol 2): every str and
    bytes is a py2 byte string (SHORT_BINSTRING / BINSTRING), numpy's reconstructor is
    referenced as ``numpy.core.multiarray._reconstruct``. Such a file loads with
    ``encoding="bytes"`` as dicts keyed ``b"data"`` (the CIFAR page's recipe) and with
    ``encoding="latin1"`` keyed ``"data"`` (torchvision's reader)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def _py2_pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _images(n, size, seed):
    """(n, 3, size, size) uint8 with a known random pattern."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def _cifar_rows(images):
    """(N, 3, 32, 32) -> (N, 3072) as the CIFAR page documents: the red plane, then green,
    then blue, each 32×32 plane in row-major order."""
    n = images.shape[0]
    rows = np.empty((n, 3072), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            for r in range(32):
                rows[i, 1024 * c + 32 * r:1024 * c + 32 * (r + 1)] = images[i, c, r]
    return rows


def _marker_first(images, channel, row, col):
    """Zero image 0 except one pixel, so a transposed or channel-swapped reader shows."""
    images[0] = 0
    images[0, channel, row, col] = 255
    return images


def write_cifar10(root: Path, train_x=None, n_test=3):
    """Five training batches of 2 images (or ``len(train_x) / 5``), one test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    if train_x is None:
        train_x = _marker_first(_images(10, 32, seed=2), channel=1, row=2, col=5)
    n_per_batch = len(train_x) // 5
    train_y = rng.integers(0, 10, 5 * n_per_batch)
    test_x, test_y = _images(n_test, 32, seed=3), rng.integers(0, 10, n_test)
    for b in range(5):
        sl = slice(b * n_per_batch, (b + 1) * n_per_batch)
        _py2_pickle(folder / f"data_batch_{b + 1}", {
            b"batch_label": f"training batch {b + 1} of 5".encode(),
            b"labels": [int(v) for v in train_y[sl]],
            b"data": _cifar_rows(train_x[sl]),
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        })
    _py2_pickle(folder / "test_batch", {
        b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in test_y],
        b"data": _cifar_rows(test_x), b"filenames": [b"t.png"] * n_test})
    _py2_pickle(folder / "batches.meta", {
        b"num_cases_per_batch": n_per_batch, b"num_vis": 3072,
        b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                         b"frog", b"horse", b"ship", b"truck"]})
    return folder, (train_x, train_y, test_x, test_y)


def write_cifar100(root: Path, n_train=6, n_test=4):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    train_x = _marker_first(_images(n_train, 32, seed=4), channel=2, row=30, col=1)
    test_x = _images(n_test, 32, seed=5)
    # Fine labels span 0..99 (including the extremes); coarse labels differ from them so
    # reading the wrong key would show.
    train_y = np.array([0, 99, 57, 3, 42, 99][:n_train])
    test_y = np.array([98, 1, 64, 7][:n_test])
    for fname, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        _py2_pickle(folder / fname, {
            b"filenames": [b"f.png"] * len(y), b"batch_label": fname.encode(),
            b"fine_labels": [int(v) for v in y], b"coarse_labels": [int(v) // 5 for v in y],
            b"data": _cifar_rows(x)})
    _py2_pickle(folder / "meta", {
        b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]})
    return folder, (train_x, train_y, test_x, test_y)


def _write_stl_images(path: Path, images):
    """STL-10 README: each 96×96 image stored channel by channel (R, G, B), each plane in
    column-major order (the first 96 bytes are the image's first column)."""
    with open(path, "wb") as f:
        for img in images:
            for plane in img:
                f.write(plane.tobytes(order="F"))


def write_stl10(root: Path, train_x=None, test_x=None):
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    if train_x is None:
        train_x = _marker_first(_images(4, 96, seed=6), channel=2, row=10, col=70)
    if test_x is None:
        test_x = _images(3, 96, seed=7)
    train_y = np.array([0, 9, 4, 5, 2, 8, 1, 3, 6, 7][:len(train_x)])
    test_y = np.array([9, 0, 3, 2, 1, 4, 5, 6, 7, 8][:len(test_x)])
    _write_stl_images(folder / "train_X.bin", train_x)
    _write_stl_images(folder / "test_X.bin", test_x)
    _write_stl_images(folder / "unlabeled_X.bin", _images(1, 96, seed=8))
    # Label files hold one byte per image, 1-based (1..10).
    (train_y + 1).astype(np.uint8).tofile(folder / "train_y.bin")
    (test_y + 1).astype(np.uint8).tofile(folder / "test_y.bin")
    (folder / "class_names.txt").write_text(
        "\n".join(["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey",
                   "ship", "truck"]) + "\n")
    return folder, (train_x, train_y, test_x, test_y)


WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "stl10": write_stl10}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def accept_miniature_md5s(monkeypatch, cls, folder: Path) -> None:
    """Swap torchvision's per-file md5s for those of the intact miniature files (what
    torchvision's own tests do). Any later change to a file still fails the check."""
    monkeypatch.setattr(cls, "train_list", [[f, _md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, _md5(folder / f)] for f, _ in cls.test_list])
    if isinstance(getattr(cls, "meta", None), dict):
        monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / cls.meta["filename"])})


def write_accepted(name, root, monkeypatch, **kwargs):
    folder, expected = WRITERS[name](root, **kwargs)
    accept_miniature_md5s(monkeypatch, TV_CLASSES[name], folder)
    return folder, expected


def _message_field(message: str, label: str) -> list[str]:
    """The comma-separated names on the line starting with ``label`` in an error message."""
    line = next(ln for ln in message.splitlines() if ln.startswith(label))
    value = line.split(":", 1)[1].strip()
    return [] if value == "none" else [v.strip() for v in value.split(",")]


def _assert_split(split: Split, images_nchw, labels, size):
    assert split.images.dtype == torch.uint8 and split.images.is_contiguous()
    assert split.images.shape == (len(labels), 3, size, size)
    assert split.labels.dtype == torch.int64
    if images_nchw is not None:
        assert torch.equal(split.images, torch.from_numpy(np.asarray(images_nchw)))
    assert split.labels.tolist() == [int(v) for v in labels]


# ---------------------------------------------------------------------------------------
# registry, names, data root
# ---------------------------------------------------------------------------------------

def test_registry_names_sizes_and_classes():
    assert DATASET_NAMES == ("digits", "fashion_mnist", "cifar10", "cifar100", "stl10")
    assert [default_image_size(n) for n in DATASET_NAMES] == [32, 32, 32, 32, 64]
    assert [num_classes(n) for n in DATASET_NAMES] == [10, 10, 10, 100, 10]


@pytest.mark.parametrize("fn", [load_dataset, default_image_size, num_classes])
def test_unknown_name_lists_allowed_names(fn):
    with pytest.raises(ValueError) as info:
        fn("mnist")
    msg = str(info.value)
    assert "'mnist'" in msg
    assert all(n in msg for n in DATASET_NAMES)


@pytest.mark.parametrize("bad", [0, -4, 3.5, True, "32"])
def test_invalid_image_size(bad):
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=bad)


def test_resolve_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RKDO_DATA_ROOT", raising=False)
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "rkdo" / "data"
    monkeypatch.setenv("RKDO_DATA_ROOT", "")  # empty counts as unset
    assert resolve_data_root() == tmp_path / "home" / ".cache" / "rkdo" / "data"

    monkeypatch.setenv("RKDO_DATA_ROOT", str(tmp_path / "from_env"))
    assert resolve_data_root() == tmp_path / "from_env"
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"  # arg wins

    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("rel") == tmp_path / "rel"  # always absolute
    assert resolve_data_root("~/d") == tmp_path / "home" / "d"
    assert not (tmp_path / "from_env").exists()  # resolving creates nothing


def test_env_data_root_is_used_by_load_dataset(monkeypatch, tmp_path):
    folder, (train_x, train_y, test_x, test_y) = write_accepted("cifar10", tmp_path, monkeypatch)
    monkeypatch.setenv("RKDO_DATA_ROOT", str(tmp_path))
    ds = load_dataset("cifar10", download=False)
    _assert_split(ds.train, train_x, train_y, 32)


# ---------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------

def test_digits_shapes_range_and_labels():
    ds = load_dataset("digits")
    assert isinstance(ds, DatasetSplits)
    assert (ds.name, ds.num_classes, ds.image_size) == ("digits", 10, 32)
    # 1,797 images; sklearn puts ceil(0.3 * 1797) = 540 in the test split.
    assert (len(ds.train), len(ds.test)) == (1257, 540)
    for split in (ds.train, ds.test):
        x = split.images
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and x.is_contiguous()
        assert split.labels.dtype == torch.int64
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
        assert int(x.min()) == 0 and int(x.max()) == 255  # 0..16 scaled onto 0..255
        assert set(split.labels.tolist()) == set(range(10))
    all_labels = torch.cat([ds.train.labels, ds.test.labels])
    assert torch.equal(torch.bincount(all_labels, minlength=10),
                       torch.from_numpy(np.bincount(load_digits().target, minlength=10)))


def test_digits_split_is_stratified():
    ds = load_dataset("digits")
    n_train = torch.bincount(ds.train.labels, minlength=10)
    n_test = torch.bincount(ds.test.labels, minlength=10)
    for c in range(10):
        total = int(n_train[c] + n_test[c])
        assert abs(int(n_test[c]) - 0.3 * total) <= 1.0, (c, int(n_test[c]), total)


def test_digits_values_are_the_sklearn_images():
    """At 8×8 no resizing happens: the split holds exactly round(v * 255 / 16) of the
    sklearn images picked by the documented split (test_size=0.3, stratified, seed 0)."""
    digits = load_digits()
    idx_train, idx_test = train_test_split(
        np.arange(len(digits.target)), test_size=0.3, stratify=digits.target, random_state=0)
    ds = load_dataset("digits", image_size=8)
    for split, idx in ((ds.train, idx_train), (ds.test, idx_test)):
        expected = np.rint(digits.images[idx] * 255 / 16).astype(np.uint8)
        assert torch.equal(split.images[:, 0], torch.from_numpy(expected))
        assert split.labels.tolist() == digits.target[idx].tolist()


def test_digits_upscaling_preserves_content():
    small = load_dataset("digits", image_size=8).train.images.float()
    big = load_dataset("digits", image_size=32).train.images.float()
    # Bilinear upscaling keeps each image's mean brightness and its coarse layout:
    # average-pooling the 32×32 image back to 8×8 lands near the original.
    assert (big.mean(dim=(1, 2, 3)) - small.mean(dim=(1, 2, 3))).abs().max() < 4.0
    pooled = torch.nn.functional.avg_pool2d(big, 4)
    assert (pooled - small).abs().mean() < 20.0
    corr = torch.corrcoef(torch.stack([pooled.flatten(), small.flatten()]))[0, 1]
    assert corr > 0.95


def test_digits_image_size_16():
    ds = load_dataset("digits", image_size=16)
    assert ds.image_size == 16
    assert ds.train.images.shape == (1257, 3, 16, 16)
    assert ds.test.images.shape == (540, 3, 16, 16)
    assert torch.equal(ds.train.labels, load_dataset("digits").train.labels)


def test_digits_deterministic_and_independent_of_run_seeds():
    first = load_dataset("digits")
    first.train.images.zero_()  # an in-place edit by one caller must not leak
    D._digits_splits_cached.cache_clear()
    torch.manual_seed(123)
    np.random.seed(123)
    second = load_dataset("digits")
    torch.manual_seed(7)
    np.random.seed(7)
    third = load_dataset("digits")  # served from the cache
    assert int(second.train.images.max()) == 255
    for a, b in ((second.train, third.train), (second.test, third.test)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    D._digits_splits_cached.cache_clear()
    torch.manual_seed(99)
    fourth = load_dataset("digits", data_root="/nonexistent", download=False)  # both ignored
    assert torch.equal(fourth.test.images, second.test.images)
    assert torch.equal(fourth.test.labels, second.test.labels)


# ---------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 / STL-10 on miniature real-format files
# ---------------------------------------------------------------------------------------

def test_cifar_writer_matches_published_format(tmp_path):
    """The miniature files load the way the CIFAR page says the real ones do."""
    folder, (train_x, train_y, _, _) = write_cifar10(tmp_path)
    with open(folder / "data_batch_1", "rb") as f:
        assert f.read(2) == b"\x80\x02"  # protocol 2, as the Python 2 originals
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert set(entry) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (2, 3072)
    assert entry[b"labels"] == [int(v) for v in train_y[:2]]
    # Image 0 is black but for green (plane 1) at row 2, column 5.
    assert np.flatnonzero(entry[b"data"][0]).tolist() == [1024 + 32 * 2 + 5]
    with open(folder / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="latin1")["label_names"][0] == "airplane"


def test_cifar10_round_trip(tmp_path, monkeypatch):
    _, (train_x, train_y, test_x, test_y) = write_accepted("cifar10", tmp_path, monkeypatch)
    ds = load_dataset("cifar10", data_root=tmp_path, download=False)
    assert (ds.name, ds.num_classes, ds.image_size) == ("cifar10", 10, 32)
    _assert_split(ds.train, train_x, train_y, 32)  # batches 1..5 concatenated in order
    _assert_split(ds.test, test_x, test_y, 32)
    assert ds.train.images[0].nonzero().tolist() == [[1, 2, 5]]
    assert int(ds.train.images[0, 1, 2, 5]) == 255


def test_cifar10_resized_keeps_constant_colour(tmp_path, monkeypatch):
    train_x = _images(10, 32, seed=9)
    train_x[3] = np.array([200, 30, 7], dtype=np.uint8)[:, None, None]
    write_accepted("cifar10", tmp_path, monkeypatch, train_x=train_x)
    ds = load_dataset("cifar10", data_root=tmp_path, download=False, image_size=16)
    assert ds.image_size == 16 and ds.train.images.shape == (10, 3, 16, 16)
    assert ds.test.images.shape == (3, 3, 16, 16) and ds.train.images.is_contiguous()
    for c, v in enumerate((200, 30, 7)):
        assert bool((ds.train.images[3, c] == v).all())


def test_cifar100_round_trip_uses_fine_labels(tmp_path, monkeypatch):
    _, (train_x, train_y, test_x, test_y) = write_accepted("cifar100", tmp_path, monkeypatch)
    ds = load_dataset("cifar100", data_root=tmp_path, download=False)
    assert (ds.name, ds.num_classes, ds.image_size) == ("cifar100", 100, 32)
    _assert_split(ds.train, train_x, train_y, 32)
    _assert_split(ds.test, test_x, test_y, 32)
    assert ds.train.labels.tolist() == [0, 99, 57, 3, 42, 99]
    assert ds.train.images[0].nonzero().tolist() == [[2, 30, 1]]


def test_stl10_round_trip_native_size(tmp_path, monkeypatch):
    _, (train_x, train_y, test_x, test_y) = write_accepted("stl10", tmp_path, monkeypatch)
    ds = load_dataset("stl10", data_root=tmp_path, download=False, image_size=96)
    assert (ds.name, ds.num_classes, ds.image_size) == ("stl10", 10, 96)
    _assert_split(ds.train, train_x, train_y, 96)  # labels 1..10 on disk -> 0..9
    _assert_split(ds.test, test_x, test_y, 96)
    assert ds.train.images[0].nonzero().tolist() == [[2, 10, 70]]  # not transposed


def test_stl10_default_64_keeps_colour_and_orientation(tmp_path, monkeypatch):
    train_x = np.zeros((3, 3, 96, 96), dtype=np.uint8)
    train_x[0] = np.array([200, 30, 7], dtype=np.uint8)[:, None, None]  # constant colour
    train_x[1, :, :, 48:] = 240  # left half black, right half bright: a vertical edge
    train_x[2] = _images(1, 96, seed=10)[0]
    _, (_, train_y, test_x, test_y) = write_accepted("stl10", tmp_path, monkeypatch,
                                                     train_x=train_x)
    ds = load_dataset("stl10", data_root=tmp_path, download=False)
    assert ds.image_size == 64
    assert ds.train.images.shape == (3, 3, 64, 64) and ds.test.images.shape == (3, 3, 64, 64)
    _assert_split(ds.train, None, train_y, 64)
    _assert_split(ds.test, None, test_y, 64)
    for c, v in enumerate((200, 30, 7)):
        assert bool((ds.train.images[0, c] == v).all())
    edge = ds.train.images[1]
    assert bool((edge[:, :, :30] == 0).all()) and bool((edge[:, :, 34:] == 240).all())
    assert bool((edge == edge[:, :1, :]).all())  # every row identical: edge stayed vertical
    # The shrink is an area-like average: the mean brightness of a random image survives.
    assert abs(ds.train.images[2].float().mean() - float(train_x[2].mean())) < 1.0


# ---------------------------------------------------------------------------------------
# missing, corrupt and undownloadable files
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_missing_files_error_says_what_where_and_how(name, tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, data_root=tmp_path, download=False)
    msg = str(info.value)
    folder = tmp_path / FOLDERS[name]
    assert str(folder) in msg and folder.is_absolute()
    assert URLS[name] in msg
    assert "RKDO_DATA_ROOT" in msg and "download=True" in msg
    expected = _message_field(msg, "Expected files there")
    assert _message_field(msg, "Missing") == expected
    assert _message_field(msg, "Present but corrupt") == []
    # Every file the installed torchvision checks is named, so following the message works.
    cls = TV_CLASSES[name]
    checked = {f for f, _ in cls.train_list + cls.test_list}
    checked |= {cls.meta["filename"]} if isinstance(getattr(cls, "meta", None), dict) else set()
    assert checked <= set(expected)
    assert isinstance(info.value.__cause__, RuntimeError)  # torchvision's error, chained
    assert not folder.exists()  # download=False touches nothing


@pytest.mark.parametrize("name, removed", [("cifar10", "test_batch"), ("cifar100", "meta"),
                                           ("stl10", "test_y.bin")])
def test_one_missing_file_is_named(name, removed, tmp_path, monkeypatch):
    folder, _ = write_accepted(name, tmp_path, monkeypatch)
    (folder / removed).unlink()
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, data_root=tmp_path, download=False)
    assert _message_field(str(info.value), "Missing") == [removed]


@pytest.mark.parametrize("name, victim", [("cifar10", "data_batch_3"), ("cifar10", "test_batch"),
                                          ("cifar100", "train"), ("stl10", "train_X.bin"),
                                          ("stl10", "test_y.bin")])
def test_truncated_file_is_named(name, victim, tmp_path, monkeypatch):
    folder, _ = write_accepted(name, tmp_path, monkeypatch)
    raw = (folder / victim).read_bytes()
    (folder / victim).write_bytes(raw[:len(raw) // 2])
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, data_root=tmp_path, download=False)
    msg = str(info.value)
    assert _message_field(msg, "Present but corrupt") == [victim]
    assert _message_field(msg, "Missing") == []
    assert str(folder) in msg and URLS[name] in msg
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("name, victim, cause", [
    ("cifar10", "data_batch_2", pickle.UnpicklingError),
    ("cifar100", "test", pickle.UnpicklingError),
    ("stl10", "train_X.bin", None),  # caught by the images-vs-labels count check
    ("stl10", "test_X.bin", ValueError),  # numpy's reshape of a partial image
])
def test_unreadable_file_that_passes_md5_still_gives_clear_error(name, victim, cause, tmp_path,
                                                                  monkeypatch):
    """A damaged file whose checksum was (wrongly) accepted: the unpickler or the reshape
    fails, or images and labels disagree in number; the error type and message hold."""
    folder, _ = WRITERS[name](tmp_path)
    raw = (folder / victim).read_bytes()
    # Half of STL-10's 4 training images is 2 whole images (count mismatch with the
    # labels); half of its 3 test images is not a whole number (reshape fails).
    (folder / victim).write_bytes(raw[:len(raw) // 2])
    accept_miniature_md5s(monkeypatch, TV_CLASSES[name], folder)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, data_root=tmp_path, download=False)
    msg = str(info.value)
    assert name in msg and str(folder) in msg and URLS[name] in msg
    assert _message_field(msg, "Missing") == [] and _message_field(msg, "Present but") == []
    if cause is None:
        assert info.value.__cause__ is None
        assert re.search(r"Problem: the train split read as images \(2, 3, 96, 96\) with "
                         r"labels \(4,\)", msg)
    else:
        assert isinstance(info.value.__cause__, cause)
        assert f"Underlying error: {type(info.value.__cause__).__name__}" in msg


@pytest.mark.parametrize("name, module", [("cifar10", "torchvision.datasets.cifar"),
                                          ("cifar100", "torchvision.datasets.cifar"),
                                          ("stl10", "torchvision.datasets.stl10")])
def test_failed_download_is_reported(name, module, tmp_path, monkeypatch):
    calls = []

    def no_network(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(f"{module}.download_and_extract_archive", no_network)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(name, data_root=tmp_path, download=True)
    assert calls == [URLS[name]]
    msg = str(info.value)
    assert re.search(r"Downloading \S+ was attempted and failed", msg)
    assert URLS[name] in msg and str(tmp_path / FOLDERS[name]) in msg
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_download_true_with_files_present_does_not_download(tmp_path, monkeypatch):
    _, (train_x, train_y, _, _) = write_accepted("cifar10", tmp_path, monkeypatch)

    def fail(*args, **kwargs):
        raise AssertionError("must not download when the files pass their checks")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", fail)
    ds = load_dataset("cifar10", data_root=str(tmp_path), download=True)
    _assert_split(ds.train, train_x, train_y, 32)


def test_split_validates_its_tensors():
    ok = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    Split(ok, torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="uint8"):
        Split(ok.float(), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="contiguous"):
        Split(ok.permute(0, 1, 3, 2), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="labels"):
        Split(ok, torch.zeros(3, dtype=torch.int64))
