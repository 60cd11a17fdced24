"""CIFAR-10 from a local copy in its standard python-pickle format (chapter 02).

The standard format is the folder `cifar-10-batches-py/` of the official archive: five training
files `data_batch_1..5` and `test_batch` (each a pickled dict with `data`, a uint8 array
(N, 3072) of red, green then blue 32x32 planes, and `labels`), plus `batches.meta` (with
`label_names`). Nothing is downloaded unless you call `download(dest)` yourself.
"""
from __future__ import annotations

import os
import pickle
import tarfile
import tempfile
import urllib.request

import numpy as np
import torch

from ..errors import ConfigError, LabError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
FILES = TRAIN_FILES + ["test_batch", "batches.meta"]


class _NumpyOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a tampered file cannot run code."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3 writes bytes in a protocol-2 pickle

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def find_dir(path) -> str:
    """The folder holding the batch files: `path` itself or its `cifar-10-batches-py` child."""
    allowed = f"a directory holding CIFAR-10's python batches ({FOLDER}: data_batch_1..5, test_batch, batches.meta) or its parent; get them with lab.data.cifar.download(dest)"
    if path is None:
        raise ConfigError("path", allowed, path)
    path = os.path.expanduser(str(path))
    for d in (os.path.join(path, FOLDER), path):
        if os.path.isfile(os.path.join(d, "test_batch")):
            missing = [f for f in FILES if not os.path.isfile(os.path.join(d, f))]
            if missing:
                raise LabError(f"{d} is an incomplete CIFAR-10 copy: {', '.join(missing)} missing; download it again")
            return d
    raise ConfigError("path", allowed, path)


def read_batch(file: str) -> dict:
    """One pickled batch as a dict with str keys; a one-line LabError naming `file` if it is corrupt."""
    try:
        with open(file, "rb") as f:
            d = _NumpyOnly(f, encoding="bytes").load()  # the official files are Python 2 pickles
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    except Exception as e:  # truncated, not a pickle, wrong content: all mean "get a fresh copy"
        raise LabError(f"{file} is not a readable CIFAR-10 batch ({type(e).__name__}: {' '.join(str(e).split())[:80]}); download it again") from None
    return d


def _images(file: str):
    """(uint8 images (N, 3, 32, 32), int64 labels (N,)) of one batch file, shape-checked."""
    d = read_batch(file)
    try:
        x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R, G, B planes
        y = np.asarray(d["labels"], dtype=np.int64)
        assert len(x) == len(y) and y.min() >= 0 and y.max() < 10
    except Exception:
        raise LabError(f"{file} is not a CIFAR-10 batch (expected 'data' (N, 3072) uint8 and 'labels' 0..9); download it again") from None
    return x, y


def load_cifar10(path):
    """(x_train, y_train, x_test, y_test, class_names) from a local copy.

    Images are float32 in [0, 1], shape (N, 3, 32, 32); labels int64. The official split is
    kept (50,000 train, 10,000 test), so `DataConfig.test_fraction` does not apply here.

    Example:
        >>> xtr, ytr, xte, yte, names = load_cifar10("~/data")   # ~/data/cifar-10-batches-py
        >>> xtr.shape, names[:2]
        (torch.Size([50000, 3, 32, 32]), ['airplane', 'automobile'])
    """
    d = find_dir(path)
    parts = [_images(os.path.join(d, f)) for f in TRAIN_FILES]
    xte, yte = _images(os.path.join(d, "test_batch"))
    meta = read_batch(os.path.join(d, "batches.meta"))
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])] or [str(i) for i in range(10)]
    t = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0)  # noqa: E731
    return (t(np.concatenate([p[0] for p in parts])), torch.from_numpy(np.concatenate([p[1] for p in parts])),
            t(xte), torch.from_numpy(yte), names)


def download(dest: str = "~/data") -> str:
    """Download and unpack the official archive (163 MB) into `dest`; returns the batch folder.

    Only when you ask for it, and only where a network exists; an existing copy is reused.

    Example:
        >>> cfg.data.path = lab.data.cifar.download("~/data")
    """
    dest = os.path.expanduser(dest)
    target = os.path.join(dest, FOLDER)
    if os.path.isfile(os.path.join(target, "test_batch")):
        return target
    os.makedirs(dest, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".tar.gz", dir=dest) as tmp:
        try:
            urllib.request.urlretrieve(URL, tmp.name)
        except OSError as e:
            raise LabError(f"could not download {URL} ({e}); copy {FOLDER} into {dest} by hand") from None
        with tarfile.open(tmp.name) as tar:
            # the "data" filter refuses absolute paths and links out of `dest`
            tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return find_dir(target)


CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar_like(directory: str, n: int = 20, seed: int = 0) -> str:
    """Write a small random copy in the exact standard format (for tests): `n` images per file.

    Returns the folder written (`directory/cifar-10-batches-py`).
    """
    rng = np.random.default_rng(seed)
    d = os.path.join(directory, FOLDER)
    os.makedirs(d, exist_ok=True)
    for name in TRAIN_FILES + ["test_batch"]:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_cases_per_batch": n, b"num_vis": 3072}
    with open(os.path.join(d, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return d
