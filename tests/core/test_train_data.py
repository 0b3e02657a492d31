"""The image-folder loader (`--data folder:PATH`) on tiny generated folders."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from core.data import load_dataset


def make_folder(root, colour: bool = False):
    """Classes 'circle' (2 images, brightness 0 and 255) and 'square' (1 image, value 51)."""
    for name, values in (("circle", (0, 255)), ("square", (51,))):
        (root / name).mkdir(parents=True)
        for i, v in enumerate(values):
            if colour:
                Image.new("RGB", (8, 8), (v, 0, 255 - v)).save(root / name / f"{i}.png")
            else:
                Image.new("L", (8, 8), v).save(root / name / f"{i}.png")
    (root / "circle" / "notes.txt").write_text("not an image")
    return root


def test_grey_folder(tmp_path):
    x, y, names = load_dataset(f"folder:{make_folder(tmp_path / 'data')}")
    assert names == ("circle", "square")
    assert x.shape == (3, 1, 32, 32) and y.tolist() == [0, 0, 1]
    assert x[0].eq(-1).all() and x[1].eq(1).all()
    assert torch.allclose(x[2], torch.full_like(x[2], 51 / 127.5 - 1))


def test_colour_folder_keeps_three_channels(tmp_path):
    x, y, _ = load_dataset(f"folder:{make_folder(tmp_path / 'data', colour=True)}")
    assert x.shape == (3, 3, 32, 32)
    assert x[1, 0].eq(1).all() and x[1, 1].eq(-1).all() and x[1, 2].eq(-1).all()


def test_options_size_channels_and_subset(tmp_path):
    root = make_folder(tmp_path / "data")
    from core.data.image_folder import image_folder_dataset

    x, y, _ = image_folder_dataset(str(root), size=16, channels=3, num=2, seed=0)
    assert x.shape == (2, 3, 16, 16) and len(y) == 2


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no sub-folders"),
    (lambda root: (root / "empty").mkdir(parents=True), "holds no images"),
    (lambda root: ((root / "a").mkdir(parents=True), (root / "a" / "x.png").write_bytes(b"junk")), "Cannot read image"),
])
def test_bad_folders_are_explained(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(ValueError, match=message):
        load_dataset(f"folder:{root}")
