"""The CIFAR-10 loader on small files written in the exact standard format (no download)."""
import os
import pickle

import numpy as np
import pytest
import torch

from lab.config import DataConfig
from lab.tasks import TASKS
from lab.data.cifar import CLASSES, download, load_cifar10, read_batch, write_cifar_like
from lab.errors import ConfigError, LabError


@pytest.fixture
def cifar_dir(tmp_path):
    return write_cifar_like(str(tmp_path), n=7)


def one_line(err, path):
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_round_trip_from_the_folder_or_its_parent(cifar_dir):
    for path in (cifar_dir, os.path.dirname(cifar_dir)):
        xtr, ytr, xte, yte, names = load_cifar10(path)
        assert xtr.shape == (35, 3, 32, 32) and xte.shape == (7, 3, 32, 32)
        assert xtr.dtype == torch.float32 and 0 <= xtr.min() and xtr.max() <= 1
        assert names == CLASSES
    # exact: pixel rows are red, green, blue planes of 32x32, labels in file order
    raw = read_batch(os.path.join(cifar_dir, "data_batch_2"))
    np.testing.assert_array_equal((xtr[7:14] * 255).round().to(torch.uint8).numpy().reshape(7, 3072), raw["data"])
    assert ytr[7:14].tolist() == raw["labels"]
    assert yte.tolist() == read_batch(os.path.join(cifar_dir, "test_batch"))["labels"]


def test_the_files_are_in_the_standard_format(cifar_dir):
    with open(os.path.join(cifar_dir, "data_batch_1"), "rb") as f:
        d = pickle.load(f, encoding="bytes")  # how the official README says to read them
    assert set(d) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (7, 3072)
    with open(os.path.join(cifar_dir, "batches.meta"), "rb") as f:
        assert pickle.load(f, encoding="bytes")[b"label_names"][0] == b"airplane"


def test_dataset_builds_a_classification_task(cifar_dir):
    task = TASKS.build("cifar10", DataConfig(name="cifar10", path=cifar_dir), torch.float32)
    assert task.spec == {"input_shape": (3, 32, 32), "n_classes": 10} and task.classes == CLASSES
    x, y = next(task.batches(0, 2, 4))
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)


@pytest.mark.parametrize("path", [None, "missing", "empty"])
def test_missing_directory_is_a_one_line_config_error(tmp_path, path):
    if path is not None:
        path = tmp_path / path
        if path.name == "empty":
            path.mkdir()
    with pytest.raises(ConfigError) as e:
        load_cifar10(None if path is None else str(path))
    msg = one_line(e, path)
    assert msg.startswith("path must be") and "cifar-10-batches-py" in msg


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong content", "code"])
def test_corrupt_file_is_a_one_line_error_naming_the_file(cifar_dir, damage, tmp_path):
    bad = os.path.join(cifar_dir, "data_batch_3")
    if damage == "garbage":
        data = os.urandom(500)
    elif damage == "truncated":
        data = open(bad, "rb").read()[:1000]
    elif damage == "wrong content":
        data = pickle.dumps({b"data": np.zeros((3, 10), np.uint8), b"labels": [1, 2, 3]}, protocol=2)
    else:  # a pickle that would run a command when loaded with plain pickle.load
        data = b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR."
    with open(bad, "wb") as f:
        f.write(data)
    with pytest.raises(LabError) as e:
        load_cifar10(cifar_dir)
    one_line(e, bad)
    assert not (tmp_path / "pwned").exists()


def test_incomplete_copy_names_the_missing_file(cifar_dir):
    os.remove(os.path.join(cifar_dir, "data_batch_5"))
    with pytest.raises(LabError, match="data_batch_5") as e:
        load_cifar10(cifar_dir)
    one_line(e, cifar_dir)


def test_download_reuses_an_existing_copy_without_network(cifar_dir):
    assert download(os.path.dirname(cifar_dir)) == cifar_dir
