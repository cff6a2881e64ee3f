"""Tests for netmark.data: readers on tiny generated files, look-up order, splits, ArrayDataset."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import netmark.data.files as data_files
from netmark.data import DATASETS, ArrayDataset, available, load
from netmark.data.readers import RestrictedUnpickler, safe_pickle_loads
from netmark.data.splits import stratified_split
from netmark.errors import DataError, NetmarkError

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# ----------------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray, magic: bytes | None = None) -> bytes:
    """Serialize a uint8 array as an IDX file."""
    head = magic if magic is not None else bytes([0, 0, 0x08, arr.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + dims + arr.astype(np.uint8).tobytes()


def make_images(n: int, h: int, w: int, offset: int = 0, seed: int = 0) -> np.ndarray:
    """Random images whose first two pixels encode their id (offset + i), to track samples."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)
    ids = np.arange(n) + offset
    x[:, 0, 0] = ids % 256
    x[:, 0, 1] = ids // 256
    return x


def ids_of(ds: ArrayDataset) -> set[int]:
    raw = (ds.x[:, 0, 0, :2] * 255).round().long()
    return set((raw[:, 0] + 256 * raw[:, 1]).tolist())


def write_idx_dataset(directory: Path, n_train: int = 200, n_test: int = 50, gz: bool = True) -> dict:
    """Tiny MNIST-layout dataset; labels cycle through 0..9."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_FILES[0]: make_images(n_train, 28, 28),
        IDX_FILES[1]: (np.arange(n_train) % 10).astype(np.uint8),
        IDX_FILES[2]: make_images(n_test, 28, 28, offset=10_000, seed=1),
        IDX_FILES[3]: ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (directory / name).write_bytes(gzip.compress(raw))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(raw)
    return arrays


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes protocol-2 pickles the way Python 2 wrote the original CIFAR batches.

    Byte and text strings become py2 ``str`` opcodes (SHORT_BINSTRING / BINSTRING); numpy is referenced
    as ``numpy.core.multiarray`` (Python 3 would emit ``_codecs.encode`` calls instead).
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_py2_text(self, obj: str) -> None:
        self.save_py2_str(obj.encode("latin-1"))

    dispatch[str] = save_py2_text

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "")
        if module == "numpy._core.multiarray" or module == "numpy.core.multiarray":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)

    dispatch[type(np.ndarray.__reduce__(np.zeros(1))[0])] = save_global


def py2_dumps(obj: object) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(n: int, label_key: str, num_classes: int, seed: int, coarse: bool = False) -> bytes:
    """A CIFAR-style batch (bytes keys, uint8 (N, 3072) data), pickled like the Python-2 originals."""
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": b"tiny batch",
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        label_key.encode(): [int(v) for v in rng.integers(0, num_classes, size=n)],
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if coarse:
        batch[b"coarse_labels"] = [int(v) for v in rng.integers(0, 20, size=n)]
    return py2_dumps(batch)


def write_cifar10(folder: Path, per_batch: int = 6) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {f"data_batch_{i}": cifar_batch(per_batch, "labels", 10, seed=i) for i in range(1, 6)}
    blobs["test_batch"] = cifar_batch(per_batch, "labels", 10, seed=99)
    blobs["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return blobs


def write_cifar100(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    blobs = {
        "train": cifar_batch(30, "fine_labels", 100, seed=5, coarse=True),
        "test": cifar_batch(10, "fine_labels", 100, seed=6, coarse=True),
        "meta": pickle.dumps({b"fine_label_names": [b"apple"] * 100}, protocol=2),
    }
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
    return blobs


def tar_folder(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real env dirs, system dir, cache or network in any test (unless a test opts back in)."""
    monkeypatch.delenv("NETMARK_DATA", raising=False)
    monkeypatch.delenv("NETMARK_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(data_files, "SYSTEM_DATA_DIR", tmp_path / "system")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


# ------------------------------------------------------------------------------------ registry


def test_registry_and_available() -> None:
    assert available() == ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist"]
    assert available() == sorted(DATASETS)
    assert DATASETS["mnist"].shape == (1, 28, 28)
    assert DATASETS["cifar100"].shape == (3, 32, 32)
    assert DATASETS["cifar100"].num_classes == 100
    assert len(DATASETS["cifar100"].coarse_classes) == 20
    assert DATASETS["fashion-mnist"].classes[0] == "T-shirt/top"
    assert DATASETS["fashion-mnist"].classes[9] == "Ankle boot"
    for spec in DATASETS.values():
        assert len(spec.classes) == spec.num_classes
        assert len(spec.urls) == len(spec.files)
    assert DATASETS["mnist"].files == IDX_FILES
    assert DATASETS["mnist"].urls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/" + IDX_FILES[0]
    assert DATASETS["cifar10"].urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(DataError, match="unknown dataset 'imagenet'; known: cifar10"):
        load("imagenet")
    with pytest.raises(DataError, match="unknown split 'validation'; known: train, val, test"):
        load("digits", "validation")  # type: ignore[arg-type]
    assert issubclass(DataError, NetmarkError)
    assert len(load("DIGITS")) == len(load("digits"))  # names are case-insensitive


# ----------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_dataset(tmp_path / "mnist", gz=gz)
    train = load("mnist", data_dir=tmp_path, download=False)
    test = load("mnist", "test", data_dir=tmp_path, download=False)
    assert (len(train), len(test)) == (200, 50)
    assert train.shape == (1, 28, 28) and train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    expected = torch.from_numpy(arrays[IDX_FILES[0]].astype(np.float32) / 255.0)
    assert torch.equal(train.x[:, 0], expected)
    assert train.y.tolist() == arrays[IDX_FILES[1]].tolist()
    assert test.y.tolist() == arrays[IDX_FILES[3]].tolist()
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) <= 1.0
    assert train.num_classes == 10 and train.name == "mnist"


def test_idx_truncated_plain_and_gz(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path / "plain", gz=False)
    images = tmp_path / "plain" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load("mnist", data_dir=tmp_path / "plain", download=False)

    write_idx_dataset(tmp_path / "gz", gz=True)
    labels = tmp_path / "gz" / IDX_FILES[1]
    labels.write_bytes(labels.read_bytes()[:-10])  # cuts the gzip stream
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        load("mnist", data_dir=tmp_path / "gz", download=False)

    write_idx_dataset(tmp_path / "hdr", gz=False)
    (tmp_path / "hdr" / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0]))
    with pytest.raises(DataError, match="truncated inside its IDX header"):
        load("mnist", "test", data_dir=tmp_path / "hdr", download=False)


def test_idx_bad_magic_and_mismatch(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=False)
    labels = np.zeros(200, dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, magic=b"\x00\x00\x0d\x01"))
    with pytest.raises(DataError, match="magic number 0x00000d01"):
        load("mnist", data_dir=tmp_path, download=False)

    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:150]))
    with pytest.raises(DataError, match=r"200 images but .* 150 labels"):
        load("mnist", data_dir=tmp_path, download=False)

    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(200, 11, dtype=np.uint8)))
    with pytest.raises(DataError, match="labels outside"):
        load("mnist", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------------------- CIFAR


def test_cifar10_extracted_and_archive(tmp_path: Path) -> None:
    folder = tmp_path / "extracted" / "cifar-10-batches-py"
    blobs = write_cifar10(folder)
    train = load("cifar10", data_dir=tmp_path / "extracted", download=False)
    test = load("cifar10", "test", data_dir=folder, download=False)  # the batch folder itself works too
    assert (len(train), len(test)) == (30, 6)
    assert train.shape == (3, 32, 32) and train.classes[0] == "airplane"
    first = pickle.loads(blobs["data_batch_1"], encoding="bytes")  # our own trusted test data
    assert torch.equal(train.x[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32) / np.float32(255)))
    assert train.y[:6].tolist() == first[b"labels"]

    archive_dir = tmp_path / "archived"
    archive_dir.mkdir()
    tar_folder(folder, archive_dir / "cifar-10-python.tar.gz")
    from_tar = load("cifar10", data_dir=archive_dir, download=False)
    assert torch.equal(from_tar.x, train.x) and torch.equal(from_tar.y, train.y)


def test_cifar100_fine_coarse_and_archive(tmp_path: Path) -> None:
    folder = tmp_path / "src" / "cifar-100-python"
    blobs = write_cifar100(folder)
    (tmp_path / "cifar100").mkdir()
    tar_folder(folder, tmp_path / "cifar100" / "cifar-100-python.tar.gz")
    fine = load("cifar100", data_dir=tmp_path, download=False)
    coarse = load("cifar100", data_dir=tmp_path, download=False, label_mode="coarse")
    test = load("cifar100", "test", data_dir=tmp_path, download=False)
    raw = pickle.loads(blobs["train"], encoding="bytes")
    assert len(fine) == 30 and len(test) == 10
    assert fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.y.tolist() == raw[b"fine_labels"]
    assert coarse.y.tolist() == raw[b"coarse_labels"]
    assert coarse.classes[0] == "aquatic_mammals"
    with pytest.raises(DataError, match="no coarse labels"):
        load("cifar10", label_mode="coarse", download=False)


def test_cifar_corrupt_archive_and_bad_batch(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        load("cifar10", data_dir=tmp_path, download=False)

    folder = tmp_path / "x" / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_3").write_bytes(py2_dumps({b"data": [1, 2, 3], b"labels": [0]}))
    with pytest.raises(DataError, match="not a uint8 array"):
        load("cifar10", data_dir=folder, download=False)
    (folder / "data_batch_3").write_bytes(cifar_batch(6, "labels", 10, seed=3)[:-20])
    with pytest.raises(DataError, match="not a valid pickle"):
        load("cifar10", data_dir=folder, download=False)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("archived", [False, True])
def test_pickle_payload_refused_and_not_executed(tmp_path: Path, archived: bool) -> None:
    marker = tmp_path / "pwned_x"
    folder = tmp_path / "build" / "cifar-10-batches-py"
    write_cifar10(folder)
    blob = py2_dumps({b"data": _Payload(marker), b"labels": []})
    (folder / "data_batch_1").write_bytes(blob)
    data_dir = folder
    if archived:
        data_dir = tmp_path / "tar"
        data_dir.mkdir()
        tar_folder(folder, data_dir / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match=r"forbidden global (posix|os|nt)\.system"):
        load("cifar10", data_dir=data_dir, download=False)
    assert not marker.exists()
    # Control: the payload is live — a plain pickle.loads would have run it.
    control = tmp_path / "control"
    pickle.loads(py2_dumps({b"data": _Payload(control)}), encoding="bytes")
    assert control.exists()


def test_restricted_unpickler_allow_list(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for blob in (py2_dumps({b"a": arr}), pickle.dumps({b"a": arr}, 3), pickle.dumps({b"a": arr}, 4)):
        assert b"numpy" in blob
        out = safe_pickle_loads(blob, "t")
        assert np.array_equal(out[b"a"], arr) and out[b"a"].dtype == np.uint8
    assert b"numpy.core.multiarray\n_reconstruct" in py2_dumps({b"a": arr})  # like the original files
    unpickler = RestrictedUnpickler(io.BytesIO(b""))
    assert unpickler.find_class("numpy.core.multiarray", "_reconstruct") is not None  # py2-era CIFAR files
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray
    for module, name in [("builtins", "eval"), ("os", "system"), ("numpy", "load"), ("builtins", "getattr")]:
        with pytest.raises(pickle.UnpicklingError):
            unpickler.find_class(module, name)
    marker = tmp_path / "pwned_eval"
    evil = pickle.dumps(_Payload(marker), protocol=4)
    with pytest.raises(DataError, match=r"forbidden global (posix|os|nt)\.system"):
        safe_pickle_loads(evil, "evil")
    assert not marker.exists()


# ------------------------------------------------------------------------------ file look-up


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, system = tmp_path / "explicit", tmp_path / "env", tmp_path / "system"
    write_idx_dataset(explicit, n_train=30)  # files directly in the dir
    write_idx_dataset(env / "mnist", n_train=40)  # <dir>/<name>/
    write_idx_dataset(system / "mnist", n_train=50)
    monkeypatch.setenv("NETMARK_DATA", str(env))
    assert len(load("mnist", data_dir=explicit, download=False)) == 30
    assert len(load("mnist", download=False)) == 40
    assert len(load("mnist", data_dir=tmp_path / "empty", download=False)) == 40  # falls through
    monkeypatch.delenv("NETMARK_DATA")
    assert len(load("mnist", download=False)) == 50
    # <data_dir>/<name>/ wins over stray files of the same names directly in data_dir.
    write_idx_dataset(explicit / "mnist", n_train=20)
    assert len(load("mnist", data_dir=explicit, download=False)) == 20


def test_not_found_message_names_files_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError) as info:
        load("fashion-mnist", data_dir=tmp_path / "mine", download=False)
    message = str(info.value)
    for name in IDX_FILES:
        assert name in message
    assert str(tmp_path / "mine" / "fashion-mnist") in message
    assert "download=False" in message

    monkeypatch.setenv("NETMARK_OFFLINE", "1")
    monkeypatch.setenv("NETMARK_DATA", str(tmp_path / "envdir"))
    with pytest.raises(DataError, match="NETMARK_OFFLINE") as info:
        load("cifar10", download=True)  # urlopen would raise AssertionError if it were called
    assert "cifar-10-python.tar.gz" in str(info.value)
    assert str(tmp_path / "envdir" / "cifar10") in str(info.value)


def test_download_is_atomic_and_mocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "source"
    write_idx_dataset(source, n_train=20, n_test=10)
    requested: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> io.BytesIO:
        requested.append(url)
        assert timeout <= 30
        return io.BytesIO((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setenv("NETMARK_DATA", str(tmp_path / "env"))
    ds = load("mnist", download=True)
    assert len(ds) == 20
    assert requested == [DATASETS["mnist"].base_url + f for f in IDX_FILES]
    target = tmp_path / "env" / "mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(IDX_FILES)  # no *.part left behind
    assert len(load("mnist", "test", download=True)) == 10
    assert len(requested) == 4  # second call finds the files

    def failing_urlopen(url: str, timeout: float) -> io.BytesIO:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", failing_urlopen)
    with pytest.raises(DataError, match="no route to host") as info:
        load("fashion-mnist", download=True)
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert list((tmp_path / "env" / "fashion-mnist").iterdir()) == []


# -------------------------------------------------------------------------------------- splits


def test_val_train_disjoint_and_sizes(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n_train=200, n_test=50)
    kw = {"data_dir": tmp_path, "download": False, "val_size": 50, "split_seed": 3}
    train, val, test = (load("mnist", s, **kw) for s in ("train", "val", "test"))  # type: ignore[arg-type]
    assert (len(train), len(val), len(test)) == (150, 50, 50)
    assert ids_of(train).isdisjoint(ids_of(val))
    assert ids_of(train) | ids_of(val) == set(range(200))
    assert ids_of(test) == set(range(10_000, 10_050))
    assert torch.bincount(val.y, minlength=10).tolist() == [5] * 10  # stratified
    frac = load("mnist", "val", data_dir=tmp_path, download=False, val_size=0.25, split_seed=3)
    assert ids_of(frac) == ids_of(val)
    other = load("mnist", "val", data_dir=tmp_path, download=False, val_size=50, split_seed=4)
    assert ids_of(other) != ids_of(val)
    assert len(load("mnist", data_dir=tmp_path, download=False)) == 200  # val_size=0: all of train


def test_bad_sizes(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n_train=200)
    kw = {"data_dir": tmp_path, "download": False}
    with pytest.raises(DataError, match="'val' split is empty"):
        load("mnist", "val", **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="leaves no training samples"):
        load("mnist", val_size=200, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"in \(0, 1\)"):
        load("mnist", val_size=1.5, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="val_size must be"):
        load("mnist", val_size=-1, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="train_size must be"):
        load("mnist", train_size=0, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="train_size must be"):
        load("mnist", train_size=True, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="exceeds the 150 available"):
        load("mnist", train_size=151, val_size=50, **kw)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="split_seed must be"):
        load("mnist", split_seed=-2, **kw)  # type: ignore[arg-type]


def test_train_size_subset_is_deterministic(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, n_train=200, n_test=50)
    kw = {"data_dir": tmp_path, "download": False, "val_size": 50}
    a = load("mnist", train_size=40, **kw)  # type: ignore[arg-type]
    b = load("mnist", train_size=40, **kw)  # type: ignore[arg-type]
    c = load("mnist", train_size=40, split_seed=1, **kw)  # type: ignore[arg-type]
    assert len(a) == 40 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert ids_of(a) != ids_of(c)
    assert ids_of(a) <= ids_of(load("mnist", **kw))  # type: ignore[arg-type]
    assert torch.bincount(a.y, minlength=10).tolist() == [4] * 10
    # train_size only affects "train": val and test are unchanged by it.
    assert len(load("mnist", "val", train_size=40, **kw)) == 50  # type: ignore[arg-type]
    assert len(load("mnist", "test", train_size=40, **kw)) == 50  # type: ignore[arg-type]


def test_stratified_split_exact_counts() -> None:
    y = np.array([0] * 7 + [1] * 3 + [2] * 1)
    picked, rest = stratified_split(y, 5, np.random.default_rng(0))
    assert len(picked) == 5 and len(rest) == 6
    assert set(picked.tolist()).isdisjoint(rest.tolist())
    assert np.bincount(y[picked], minlength=3).tolist()[0] in (3, 4)
    again, _ = stratified_split(y, 5, np.random.default_rng(0))
    assert np.array_equal(picked, again)


# ---------------------------------------------------------------------------------- ArrayDataset


def small_dataset() -> ArrayDataset:
    x = torch.rand(12, 1, 4, 4)
    y = torch.arange(12) % 4
    return ArrayDataset(x, y, name="toy", num_classes=4, classes=("a", "b", "c", "d"))


def test_array_dataset_basics() -> None:
    ds = small_dataset()
    assert len(ds) == 12 and ds.shape == (1, 4, 4)
    xi, yi = ds[5]
    assert torch.equal(xi, ds.x[5]) and int(yi) == 1
    assert torch.equal(ds[torch.tensor(5)][0], xi)
    xb, yb = ds[[0, 4, 8]]
    assert xb.shape == (3, 1, 4, 4) and yb.tolist() == [0, 0, 0]
    sub = ds.subset([3, 1])
    assert sub.y.tolist() == [3, 1] and sub.classes == ds.classes and torch.equal(sub.x[0], ds.x[3])
    with pytest.raises(DataError, match="must lie in"):
        ds.subset([12])
    with pytest.raises(DataError, match="float32"):
        ArrayDataset(torch.zeros(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.long),
                     name="bad", num_classes=2)  # fmt: skip
    with pytest.raises(DataError, match="labels outside"):
        ArrayDataset(torch.zeros(2, 1, 4, 4), torch.tensor([0, 5]), name="bad", num_classes=2)


def test_select_classes_relabels() -> None:
    ds = small_dataset()
    sel = ds.select_classes([3, 1])
    assert len(sel) == 6 and sel.num_classes == 2 and sel.classes == ("d", "b")
    assert sorted(set(sel.y.tolist())) == [0, 1]
    orig = ds.y[torch.isin(ds.y, torch.tensor([3, 1]))]
    assert sel.y.tolist() == [0 if v == 3 else 1 for v in orig.tolist()]
    keep = ds.select_classes([2], relabel=False)
    assert keep.y.unique().tolist() == [2] and keep.num_classes == 4
    with pytest.raises(DataError, match="outside"):
        ds.select_classes([4])
    with pytest.raises(DataError, match="repeated"):
        ds.select_classes([1, 1])


def test_loader_batches_and_shuffle() -> None:
    ds = small_dataset()
    batches = list(ds.loader(5))
    assert [len(b[1]) for b in batches] == [5, 5, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), ds.y)
    order1 = torch.cat([yb for _, yb in ds.loader(5, shuffle=True, generator=torch.Generator().manual_seed(7))])
    order2 = torch.cat([yb for _, yb in ds.loader(5, shuffle=True, generator=torch.Generator().manual_seed(7))])
    assert torch.equal(order1, order2) and sorted(order1.tolist()) == sorted(ds.y.tolist())
    assert len(ds.loader(5, drop_last=True)) == 2
    with pytest.raises(DataError, match="batch_size"):
        ds.loader(0)
    state = torch.get_rng_state()
    list(ds.loader(4, shuffle=True))
    assert torch.equal(state, torch.get_rng_state())  # no global RNG use


# -------------------------------------------------------------------------------------- digits


def test_digits() -> None:
    train, test = load("digits"), load("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.shape == (1, 8, 8) and train.num_classes == 10
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert torch.bincount(test.y, minlength=10).min() >= 35  # stratified: ~36 per class
    again = load("digits", "test")
    assert torch.equal(again.x, test.x) and torch.equal(again.y, test.y)
    val = load("digits", "val", val_size=0.2)
    rest = load("digits", "train", val_size=0.2)
    assert len(val) + len(rest) == 1437 and len(val) == 287


# ------------------------------------------------------------------------- real Fashion-MNIST


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_system_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_files, "SYSTEM_DATA_DIR", FASHION_DIR.parent)
    train = load("fashion-mnist", download=False)
    test = load("fashion-mnist", "test", download=False)
    assert len(train) + len(test) == 70_000 and len(test) == 10_000
    assert train.shape == (1, 28, 28) and train.classes[0] == "T-shirt/top"
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert torch.bincount(train.y, minlength=10).tolist() == [6000] * 10


def test_inputs_of_reads_inputs_in_order_and_never_labels() -> None:
    from torch.utils.data import Dataset

    from netmark.data import TensorPairs, inputs_of

    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    pairs = TensorPairs(x, torch.arange(6))
    assert inputs_of(pairs) is x and torch.equal(inputs_of(pairs, torch.tensor([4, 1])), x[[4, 1]])

    class Slow(Dataset):  # no tensor attributes: read sample by sample
        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return x[i], torch.tensor(0)

    assert torch.equal(inputs_of(Slow()), x) and torch.equal(inputs_of(Slow(), torch.tensor([5, 0])), x[[5, 0]])
    with pytest.raises(DataError, match="equal length"):
        TensorPairs(x, torch.arange(5))
