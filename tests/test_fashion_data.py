"""Fashion-MNIST: the IDX reader and loader run on miniature files written in the official
format (gzip-compressed IDX: big-endian header, then the bytes), the folder search order,
every way a file can be missing or damaged, the download path (network mocked), and, where
Debian's ``dataset-fashion-mnist`` is installed, the real files."""

import gzip
import hashlib
import pickle
import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from helpers import idx_images_bytes, idx_labels_bytes, miniature, write_fashion, write_gz

from rkdo_core import data as D
from rkdo_core import datasets as facts_module
from rkdo_core.data import (
    FASHION_MNIST_FILES,
    FASHION_MNIST_URL,
    DatasetUnavailableError,
    default_image_size,
    fashion_mnist_folders,
    load_dataset,
    num_classes,
)
from rkdo_core.datasets import DATASET_NAMES

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FASHION_MNIST_FILES
REAL_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------------------
# fixtures: miniature files in the official format
# ---------------------------------------------------------------------------------------

@pytest.fixture
def debian_dir(tmp_path, monkeypatch):
    """Debian's folder pointed at an empty temporary one, so no test depends on whether
    the package is installed here."""
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(D, "FASHION_MNIST_DEBIAN_DIR", folder)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if torchvision's FashionMNIST or its downloader is called."""
    def fail(*args, **kwargs):
        raise AssertionError("the network must not be touched")

    monkeypatch.setattr(tvd, "FashionMNIST", fail)
    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", fail)


def _line(message: str, prefix: str) -> str:
    return next(ln for ln in message.splitlines() if ln.startswith(prefix))


def _names(message: str, prefix: str) -> list[str]:
    value = _line(message, prefix).split(": ", 1)[1].strip()
    return [v.strip() for v in value.split(",")]


def _resized_rgb(images_28: np.ndarray, size: int) -> torch.Tensor:
    grey = D._resize_uint8(torch.from_numpy(images_28).unsqueeze(1), size)
    return grey.expand(-1, 3, -1, -1)


# ---------------------------------------------------------------------------------------
# facts and registry
# ---------------------------------------------------------------------------------------

def test_facts_and_registry():
    f = facts_module.facts("fashion_mnist")
    assert (f.num_classes, f.image_size, f.label, f.in_paper) == (10, 32, "Fashion-MNIST", False)
    assert DATASET_NAMES is facts_module.DATASET_NAMES  # data re-exports the one list
    assert DATASET_NAMES.index("fashion_mnist") == DATASET_NAMES.index("digits") + 1
    assert "fashion_mnist" not in facts_module.PAPER_DATASETS
    assert num_classes("fashion_mnist") == 10 and default_image_size("fashion_mnist") == 32
    assert tuple(D._REGISTRY) == DATASET_NAMES


def test_unknown_name_error_comes_from_the_facts():
    with pytest.raises(ValueError) as info:
        load_dataset("fashion")
    assert "'fashion'" in str(info.value) and "fashion_mnist" in str(info.value)


def test_constants_agree_with_installed_torchvision():
    """The URL and .gz md5s are those torchvision's FashionMNIST downloads and checks."""
    cls = tvd.FashionMNIST
    assert FASHION_MNIST_URL in cls.mirrors
    assert [(f.name, f.gz_md5) for f in D._FASHION_FILES] == [tuple(r) for r in cls.resources]
    assert [f.official_count for f in D._FASHION_FILES] == [60_000, 60_000, 10_000, 10_000]


# ---------------------------------------------------------------------------------------
# reading miniature files
# ---------------------------------------------------------------------------------------

def test_round_trip_default_size(tmp_path, debian_dir, no_network):
    train_x, train_y, test_x, test_y = write_fashion(tmp_path / "fashion_mnist")
    ds = load_dataset("fashion_mnist", data_root=tmp_path, download=False)
    assert (ds.name, ds.num_classes, ds.image_size) == ("fashion_mnist", 10, 32)
    for split, x, y in ((ds.train, train_x, train_y), (ds.test, test_x, test_y)):
        im = split.images
        assert im.shape == (len(y), 3, 32, 32) and im.dtype == torch.uint8
        assert im.is_contiguous()
        assert split.labels.dtype == torch.int64 and split.labels.tolist() == y.tolist()
        assert torch.equal(im[:, 0], im[:, 1]) and torch.equal(im[:, 0], im[:, 2])
        assert torch.equal(im, _resized_rgb(x, 32))  # resized the way digits are
    # Closed form: a constant image stays that constant after resizing.
    for i in (0, 2, 7, 19):
        assert bool((ds.train.images[i] == 10 * i + 5).all())


def test_native_size_is_the_file_bytes(tmp_path, debian_dir):
    train_x, train_y, test_x, _ = write_fashion(tmp_path / "fashion_mnist")
    ds = load_dataset("fashion_mnist", data_root=tmp_path, download=False, image_size=28)
    assert ds.image_size == 28 and ds.train.images.shape == (20, 3, 28, 28)
    for c in range(3):
        assert torch.equal(ds.train.images[:, c], torch.from_numpy(train_x))
        assert torch.equal(ds.test.images[:, c], torch.from_numpy(test_x))
    # IDX pixels are row-major: pixel (r, c) of image 1 is byte 16 + 784 + 28 r + c.
    raw = gzip.decompress((tmp_path / "fashion_mnist" / TRAIN_IMAGES).read_bytes())
    assert int(ds.train.images[1, 0, 3, 17]) == raw[16 + 784 + 28 * 3 + 17]


def test_image_size_argument_is_respected(tmp_path, debian_dir):
    train_x, _, test_x, _ = write_fashion(tmp_path / "fashion_mnist")
    ds = load_dataset("fashion_mnist", data_root=tmp_path, download=False, image_size=16)
    assert ds.image_size == 16
    assert ds.train.images.shape == (20, 3, 16, 16) and ds.test.images.shape == (10, 3, 16, 16)
    assert torch.equal(ds.test.images, _resized_rgb(test_x, 16))
    assert bool((ds.train.images[4] == 45).all())


def test_cached_result_is_a_fresh_copy_per_call(tmp_path, debian_dir):
    write_fashion(tmp_path / "fashion_mnist")
    first = load_dataset("fashion_mnist", data_root=tmp_path, download=False)
    expected = first.train.images.clone()
    first.train.images.zero_()  # an in-place edit by one caller must not leak
    first.train.labels.fill_(3)
    second = load_dataset("fashion_mnist", data_root=tmp_path, download=False)
    assert torch.equal(second.train.images, expected)
    assert second.train.labels.tolist() == miniature()[1].tolist()
    assert second.train.images.data_ptr() != first.train.images.data_ptr()


def test_replaced_files_are_read_again(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder, seed=0)
    assert load_dataset("fashion_mnist", data_root=tmp_path, download=False).test.labels[0] == 0
    _, _, _, test_y = write_fashion(folder, seed=4, n_test=12)  # same paths, new content
    ds = load_dataset("fashion_mnist", data_root=tmp_path, download=False)
    assert ds.test.labels.tolist() == test_y.tolist() and int(test_y[0]) == 4
    assert len(ds.test) == 12


# ---------------------------------------------------------------------------------------
# where the files are looked for
# ---------------------------------------------------------------------------------------

def test_search_order(tmp_path, debian_dir, no_network):
    root = tmp_path / "root"
    assert fashion_mnist_folders(root) == (
        root / "fashion_mnist", root / "FashionMNIST" / "raw", root, debian_dir)
    # A different seed per folder: the first label of the test split tells which was read.
    layouts = [(root / "fashion_mnist", 1), (root / "FashionMNIST" / "raw", 2), (root, 3),
               (debian_dir, 4)]
    for folder, seed in layouts:
        write_fashion(folder, seed=seed)

    def first_test_label() -> int:
        return int(load_dataset("fashion_mnist", data_root=root, download=False).test.labels[0])

    for folder, seed in layouts:
        assert first_test_label() == seed  # data root before the Debian folder
        for f in FASHION_MNIST_FILES:
            (folder / f).unlink()
    with pytest.raises(DatasetUnavailableError):
        first_test_label()


def test_incomplete_folder_is_passed_over(tmp_path, debian_dir):
    root = tmp_path / "root"
    write_fashion(root / "fashion_mnist", seed=1)
    (root / "fashion_mnist" / TEST_LABELS).unlink()
    write_fashion(debian_dir, seed=4)
    ds = load_dataset("fashion_mnist", data_root=root, download=False)
    assert int(ds.test.labels[0]) == 4


def test_data_root_that_is_the_debian_folder_is_listed_once(tmp_path, debian_dir):
    folders = fashion_mnist_folders(debian_dir)
    assert folders.count(debian_dir) == 1 and folders[-1] == debian_dir


def test_env_data_root(tmp_path, debian_dir, monkeypatch):
    write_fashion(tmp_path / "FashionMNIST" / "raw", seed=6)
    monkeypatch.setenv("RKDO_DATA_ROOT", str(tmp_path))
    assert int(load_dataset("fashion_mnist", download=False).test.labels[0]) == 6


# ---------------------------------------------------------------------------------------
# missing and damaged files
# ---------------------------------------------------------------------------------------

def test_missing_files_error_says_what_where_and_how(tmp_path, debian_dir, no_network):
    root = tmp_path / "root"
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_root=root, download=False)
    msg = str(info.value)
    assert "'fashion_mnist'" in msg
    folders = fashion_mnist_folders(root)
    assert _names(msg, "Looked in folders") == [str(f) for f in folders]
    assert _names(msg, "Expected files") == list(FASHION_MNIST_FILES)
    for folder in folders:
        assert _names(msg, f"Missing in {folder}:") == list(FASHION_MNIST_FILES)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "download=True" in msg and "FashionMNIST(root, download=True)" in msg
    assert FASHION_MNIST_URL in msg and "RKDO_DATA_ROOT" in msg
    assert "was attempted" not in msg  # download=False tries nothing
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert not root.exists()  # and creates nothing
    # A plain one-argument RuntimeError: it crosses process boundaries (Dask) intact.
    assert str(pickle.loads(pickle.dumps(info.value))) == msg


def test_one_missing_file_is_named_per_folder(tmp_path, debian_dir):
    root = tmp_path / "root"
    write_fashion(root / "fashion_mnist")
    (root / "fashion_mnist" / TRAIN_LABELS).unlink()
    write_fashion(debian_dir)
    (debian_dir / TEST_IMAGES).unlink()
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_root=root, download=False)
    msg = str(info.value)
    assert _names(msg, f"Missing in {root / 'fashion_mnist'}:") == [TRAIN_LABELS]
    assert _names(msg, f"Missing in {debian_dir}:") == [TEST_IMAGES]


def _corrupt_error(root: Path) -> tuple[str, BaseException]:
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_root=root, download=False)
    return str(info.value), info.value


@pytest.mark.parametrize("victim", FASHION_MNIST_FILES)
def test_truncated_data_is_named(victim, tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    content = gzip.decompress((folder / victim).read_bytes())
    write_gz(folder / victim, content[:-5])  # a whole gzip stream, short of data
    msg, err = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [victim]
    assert _line(msg, "Used folder").startswith(f"Used folder: {folder} ")
    problem = _line(msg, "Problem")
    assert problem.startswith(f"Problem: {victim}: truncated")
    n_items = 20 if victim.startswith("train") else 10
    per_item = 784 if "images" in victim else 1
    assert f"{n_items * per_item} bytes" in problem  # what the header announces
    assert f"holds {n_items * per_item - 5}" in problem  # what the file holds
    assert "apt-get install dataset-fashion-mnist" in msg and FASHION_MNIST_URL in msg
    assert err.__cause__ is not None


def test_truncated_gzip_stream(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    raw = (folder / TRAIN_IMAGES).read_bytes()
    (folder / TRAIN_IMAGES).write_bytes(raw[:len(raw) // 2])  # cut like a failed download
    msg, err = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TRAIN_IMAGES]
    assert "not a complete gzip file" in _line(msg, "Problem")
    assert isinstance(err.__cause__.problems[0].__cause__, EOFError)


def test_not_gzip_at_all(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    (folder / TEST_LABELS).write_bytes(idx_labels_bytes([1, 2, 3]))  # uncompressed IDX
    msg, _ = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TEST_LABELS]
    assert "not a complete gzip file" in msg and "BadGzipFile" in msg


def test_trailing_data(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    train_x, *_ = write_fashion(folder)
    write_gz(folder / TRAIN_IMAGES, idx_images_bytes(train_x) + b"\0" * 3)
    msg, _ = _corrupt_error(tmp_path)
    assert "longer than its header announces" in _line(msg, "Problem")


def test_header_shorter_than_the_idx_header(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    write_gz(folder / TEST_IMAGES, struct.pack(">II", 2051, 10))
    msg, _ = _corrupt_error(tmp_path)
    assert "fewer than the 16-byte IDX images header" in msg


def test_wrong_magic_number(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    # The train labels written where the train images belong: magic 2049, not 2051.
    shutil.copy(folder / TRAIN_LABELS, folder / TRAIN_IMAGES)
    msg, _ = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TRAIN_IMAGES]
    problem = _line(msg, "Problem")
    assert "wrong magic number 2049 (an IDX labels file); expected 2051" in problem


def test_short_labels_file_as_images_reports_the_magic(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    write_gz(folder / TEST_IMAGES, idx_labels_bytes([1, 2, 3]))  # 11 bytes < 16-byte header
    msg, _ = _corrupt_error(tmp_path)
    assert f"Problem: {TEST_IMAGES}: wrong magic number 2049 (an IDX labels file)" in msg


def test_wrong_magic_number_labels(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    write_gz(folder / TEST_LABELS, idx_labels_bytes(np.zeros(10), magic=0x0801_0000))
    msg, _ = _corrupt_error(tmp_path)
    assert f"wrong magic number {0x0801_0000}; expected 2049" in msg


def test_image_side_must_be_28(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    write_gz(folder / TEST_IMAGES, idx_images_bytes(np.zeros((10, 27, 28), dtype=np.uint8)))
    msg, _ = _corrupt_error(tmp_path)
    assert "images are 27×28 pixels; expected 28×28" in msg


def test_zero_count(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    write_gz(folder / TEST_LABELS, idx_labels_bytes([]))
    msg, _ = _corrupt_error(tmp_path)
    assert "announces 0 labels; expected at least 1" in msg


def test_inconsistent_counts(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    write_gz(folder / TRAIN_LABELS, idx_labels_bytes(np.arange(19) % 10))  # 20 images
    msg, _ = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TRAIN_IMAGES, TRAIN_LABELS]
    assert "inconsistent counts: 20 images but 19 labels" in _line(msg, "Problem")


def test_labels_out_of_range(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    labels = np.arange(10) % 10
    labels[6] = 10
    labels[8] = 255
    write_gz(folder / TEST_LABELS, idx_labels_bytes(labels))
    msg, _ = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TEST_LABELS]
    assert "2 label(s) outside 0..9, e.g. 10 at index 6" in msg


def test_every_problem_is_listed(tmp_path, debian_dir):
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder)
    shutil.copy(folder / TEST_LABELS, folder / TEST_IMAGES)
    write_gz(folder / TRAIN_LABELS, idx_labels_bytes([11] * 20))
    msg, _ = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TRAIN_LABELS, TEST_IMAGES]
    assert len([ln for ln in msg.splitlines() if ln.startswith("Problem: ")]) == 2


def test_damaged_files_in_the_first_folder_are_not_silently_skipped(tmp_path, debian_dir):
    write_fashion(tmp_path / "fashion_mnist")
    write_gz(tmp_path / "fashion_mnist" / TEST_LABELS, idx_labels_bytes([12] * 10))
    write_fashion(debian_dir)  # intact, but later in the search order
    msg, _ = _corrupt_error(tmp_path)
    assert f"the files in {tmp_path / 'fashion_mnist'} are damaged" in msg


def test_damaged_debian_copy_suggests_reinstall(tmp_path, debian_dir):
    write_fashion(debian_dir)
    write_gz(debian_dir / TEST_LABELS, idx_labels_bytes([12] * 10))
    msg, _ = _corrupt_error(tmp_path / "empty-root")
    assert "apt-get install --reinstall dataset-fashion-mnist" in msg


# ---------------------------------------------------------------------------------------
# checksums
# ---------------------------------------------------------------------------------------

def test_official_size_file_with_wrong_checksum_is_refused(tmp_path, debian_dir):
    """A file whose header announces the official count must carry the official md5: a
    well-formed 10,000-label test file that is not Zalando's is refused."""
    folder = tmp_path / "fashion_mnist"
    write_fashion(folder, n_test=10_000)
    msg, _ = _corrupt_error(tmp_path)
    assert _names(msg, "Present but corrupt") == [TEST_IMAGES, TEST_LABELS]
    problems = [ln for ln in msg.splitlines() if ln.startswith("Problem: ")]
    assert len(problems) == 2 and all("checksum mismatch" in p for p in problems)
    labels_problem = next(p for p in problems if TEST_LABELS in p)
    content = gzip.decompress((folder / TEST_LABELS).read_bytes())
    assert hashlib.md5(content).hexdigest() in labels_problem  # the value found...
    assert "bb300cfdad3c16e7a12a480ee83cd310" in labels_problem  # ...and the one allowed
    assert "15d484375f8d13e6eb1aabb0c3f46965" in labels_problem


def test_small_files_are_checked_for_structure_only(tmp_path):
    path = write_gz(tmp_path / TEST_LABELS, idx_labels_bytes([1, 2, 3]))
    read = D._read_idx(path, D._FASHION_FILES[3], 10)
    assert read.checksum is None and read.values.tolist() == [1, 2, 3]


def test_content_checksum_accepts_a_recompressed_copy(tmp_path, monkeypatch):
    """A file is accepted by its official .gz md5 or, re-compressed (Debian's copies), by
    the md5 of its decompressed bytes. Shown with a 3-label file declared official."""
    content = idx_labels_bytes([4, 0, 9])
    spec = D._IdxFile(TEST_LABELS, "test", 2049, 3, gz_md5="0" * 32,
                      idx_md5=hashlib.md5(content).hexdigest())
    path = write_gz(tmp_path / TEST_LABELS, content)
    assert D._read_idx(path, spec, 10).checksum == "content"
    gz_spec = D._IdxFile(TEST_LABELS, "test", 2049, 3,
                         gz_md5=hashlib.md5(path.read_bytes()).hexdigest(), idx_md5="0" * 32)
    assert D._read_idx(path, gz_spec, 10).checksum == "gz"
    write_gz(path, idx_labels_bytes([4, 0, 8]))
    with pytest.raises(D._IdxFileError, match="checksum mismatch"):
        D._read_idx(path, spec, 10)


# ---------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------

def test_download_false_never_touches_the_network(tmp_path, debian_dir, no_network):
    with pytest.raises(DatasetUnavailableError):
        load_dataset("fashion_mnist", data_root=tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []  # not even torchvision's folder is created


def test_failed_download_is_reported(tmp_path, debian_dir, monkeypatch):
    calls = []

    def unreachable(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", unreachable)
    root = tmp_path / "root"
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_root=root, download=True)
    assert calls and calls[0] == FASHION_MNIST_URL + TRAIN_IMAGES
    msg = str(info.value)
    assert "was attempted and failed" in msg and "retry where the network is reachable" in msg
    assert str(root / "FashionMNIST" / "raw") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert isinstance(info.value.__cause__, RuntimeError)  # torchvision's, wrapping URLError
    assert "Underlying error: RuntimeError" in msg


def test_download_puts_files_where_they_are_then_read(tmp_path, debian_dir, monkeypatch):
    """torchvision's download (network mocked: the 'server' hands out miniature files)
    lands in <root>/FashionMNIST/raw/, the second folder searched, and is read from there."""
    served = tmp_path / "server"
    train_x, train_y, test_x, test_y = write_fashion(served)
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        shutil.copy(served / name, Path(download_root) / name)
        (Path(download_root) / name[:-3]).write_bytes(gzip.decompress((served / name).read_bytes()))

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", fake_download)
    root = tmp_path / "root"
    ds = load_dataset("fashion_mnist", data_root=root, download=True, image_size=28)
    assert calls == [FASHION_MNIST_URL + f for f in FASHION_MNIST_FILES]
    assert all((root / "FashionMNIST" / "raw" / f).is_file() for f in FASHION_MNIST_FILES)
    assert ds.train.labels.tolist() == train_y.tolist()
    assert torch.equal(ds.test.images[:, 2], torch.from_numpy(test_x))


def test_download_true_with_files_present_does_not_download(tmp_path, debian_dir, no_network):
    _, train_y, _, _ = write_fashion(tmp_path / "fashion_mnist")
    ds = load_dataset("fashion_mnist", data_root=tmp_path, download=True)
    assert ds.train.labels.tolist() == train_y.tolist()


def test_download_true_does_not_overwrite_damaged_files(tmp_path, debian_dir, no_network):
    write_fashion(tmp_path / "fashion_mnist")
    write_gz(tmp_path / "fashion_mnist" / TEST_LABELS, idx_labels_bytes([12] * 10))
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_root=tmp_path, download=True)
    assert "was attempted" not in str(info.value)


# ---------------------------------------------------------------------------------------
# the real files (Debian's dataset-fashion-mnist)
# ---------------------------------------------------------------------------------------

_HAVE_REAL = all((REAL_DEBIAN_DIR / f).is_file() for f in FASHION_MNIST_FILES)


@pytest.mark.skipif(not _HAVE_REAL, reason=(
    f"the real Fashion-MNIST files are not in {REAL_DEBIAN_DIR} "
    f"(apt-get install dataset-fashion-mnist to run this test)"))
def test_real_files(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "FASHION_MNIST_DEBIAN_DIR", REAL_DEBIAN_DIR)
    # Every file passes its official checksum (by .gz md5, or by content for Debian's
    # re-compressed copies), not merely the structure checks.
    for spec in D._FASHION_FILES:
        read = D._read_idx(REAL_DEBIAN_DIR / spec.name, spec, 10)
        assert read.checksum in ("gz", "content") and len(read.values) == spec.official_count

    # At the native 28×28 (no resize: the seconds-long 32×32 resize of 60,000 images is
    # covered by the miniature tests, and measured in the report, not here).
    ds = load_dataset("fashion_mnist", data_root=tmp_path / "empty", download=False,
                      image_size=28)
    assert ds.train.images.shape == (60_000, 3, 28, 28)
    assert ds.test.images.shape == (10_000, 3, 28, 28)
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.is_contiguous()
    assert torch.bincount(ds.train.labels, minlength=10).tolist() == [6_000] * 10
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == [1_000] * 10
    assert torch.equal(ds.test.images[:, 0], ds.test.images[:, 2])
    assert 0 < float(ds.test.images[:, 0].float().mean()) < 255

    # A copy with one test label changed is well-formed but not the official file: refused.
    copy = tmp_path / "root" / "fashion_mnist"
    copy.mkdir(parents=True)
    for f in FASHION_MNIST_FILES:
        (copy / f).symlink_to(REAL_DEBIAN_DIR / f)
    content = bytearray(gzip.decompress((REAL_DEBIAN_DIR / TEST_LABELS).read_bytes()))
    content[8] = (content[8] + 1) % 10
    (copy / TEST_LABELS).unlink()
    write_gz(copy / TEST_LABELS, bytes(content))
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("fashion_mnist", data_root=tmp_path / "root", download=False)
    msg = str(info.value)
    assert _names(msg, "Present but corrupt") == [TEST_LABELS]
    assert "checksum mismatch" in _line(msg, "Problem")
