"""Model files are checked before a network is built: config types and ranges, the parameters a config
implies against the tensors present, the kind of numbers each tensor holds; and they are read without a
memory map, so a file that changes while it is read is a CheckpointError, never SIGBUS."""
from __future__ import annotations

import json
import struct

import pytest
import torch

from core import ModelBundle, ModelConfig, checkpoints
from core.checkpoints import CheckpointError, load_bundle, read_header, read_tensors, save_bundle
from core.models import build_network
from core.netfile import NetworkInfo, load_network, save_network


def mlp_bundle() -> ModelBundle:
    config = ModelConfig("mlp", (2,), network={"data_dim": 2, "width": 16, "depth": 1, "num_classes": 3},
                         num_classes=3, null_label=True, clip="none")
    torch.manual_seed(0)
    return ModelBundle("tiny", config, build_network("mlp", config.network).eval())


def rewrite(path, edit_header) -> None:
    """Edit a .safetensors header in place (`edit_header(dict)`), keeping the tensor bytes as they are."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    edit_header(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + length:])


def edit_config(**changes):
    def edit(header):
        config = json.loads(header["__metadata__"]["config"])
        for key, value in changes.items():
            if key.startswith("network."):
                config["network"][key.split(".", 1)[1]] = value
            else:
                config[key] = value
        header["__metadata__"]["config"] = json.dumps(config)
    return edit


@pytest.fixture
def bundle_file(tmp_path):
    return save_bundle(mlp_bundle(), tmp_path / "tiny.safetensors")


def test_a_tensor_stored_as_integers_is_refused(bundle_file):
    def to_int(header):
        header["model.inp.weight"]["dtype"] = "I32"  # same byte count as F32: only the type lies

    rewrite(bundle_file, to_int)
    with pytest.raises(CheckpointError, match=r"tiny.safetensors \(model\): 'inp.weight' holds integer numbers in "
                                              r"the file, but the model expects floating-point ones"):
        load_bundle(bundle_file)


@pytest.mark.parametrize("changes, message", [
    # these allocated 160 GB, grew to 5 GB, or loaded and sampled nonsense before
    (dict(**{"network.width": 200_000}), "The mlp network's width must be from 1 to 16384, got 200000."),
    (dict(**{"network.width": 16_000}), r"'inp.weight' has shape \(16, 2\) in the file, but the model expects "
                                        r"\(16000, 2\) \(the configuration describes 1,536,288,002 "
                                        r"parameters, the file holds 1,826\)"),
    (dict(**{"network.depth": 10_000_000}), "The mlp network's depth must be from 0 to 256, got 10000000."),
    (dict(**{"network.width": "16"}), "The mlp network's width must be a whole number, got '16'."),
    (dict(**{"network.colour": 1}), "unknown setting 'colour'"),
    (dict(data_shape=[-2]), "A sample size must be from 1 to 65536, got -2."),
    (dict(num_timesteps=-5), "The number of timesteps must be from 1 to 100000, got -5."),
    (dict(num_classes=2.5), "The number of classes must be a whole number, got 2.5."),
    (dict(class_names="abc"), "The class names must be a list of text"),
    (dict(null_label="yes"), "null_label must be true or false"),
    (dict(architecture=["mlp"]), "The architecture must be text"),
    # found by the fuzz suite: a shape the network cannot take loaded, then failed mid-run
    (dict(data_shape=[1, 2, 3]), r"the network takes samples of shape \(2,\), but the configuration's "
                                 r"samples are \(1, 2, 3\)"),
    (dict(data_shape=[3]), r"takes samples of shape \(2,\), but the configuration's samples are \(3,\)"),
    (dict(learn_sigma=True, variance="learned_range"), "the network gives 2 outputs per sample where 4 are expected"),
])
def test_bad_configurations_are_refused_before_anything_is_built(bundle_file, changes, message):
    rewrite(bundle_file, edit_config(**changes))
    with pytest.raises(CheckpointError, match=message):
        load_bundle(bundle_file)


@pytest.mark.parametrize("config", ["[1, 2]", '"mlp"', "{", "[" * 100_000, '{"architecture": "mlp"}'])
def test_a_configuration_that_is_not_a_record_is_one_sentence(bundle_file, config):
    def edit(header):
        header["__metadata__"]["config"] = config

    rewrite(bundle_file, edit)
    with pytest.raises(CheckpointError, match=r"its configuration is unreadable \(The model configuration"):
        load_bundle(bundle_file)


def test_a_network_file_is_checked_the_same_way(tmp_path):
    net = build_network("conv-classifier", {"in_channels": 1, "num_classes": 10, "width": 8})
    path = save_network(net, NetworkInfo("c", "classifier", "conv-classifier",
                                         {"in_channels": 1, "num_classes": 10, "width": 8}, ()), tmp_path / "n.st")

    def wider(header):
        header["__metadata__"]["network"] = json.dumps({"in_channels": 1, "num_classes": 10, "width": 4000})

    rewrite(path, wider)
    with pytest.raises(CheckpointError, match="the configuration describes"):
        load_network(path)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["model.inp.weight"].update(shape=[17, 2]), "does not match its 128 bytes"),
    (lambda h: h["model.inp.weight"].update(data_offsets=[0, 10**12]), "lies beyond the end of the file"),
    (lambda h: h["model.inp.weight"].update(dtype="F8_E4M3"), "unknown number type 'F8_E4M3'"),
    (lambda h: h["model.inp.weight"].update(shape=[-1, 2]), "has no valid shape"),
    (lambda h: h.update({"__metadata__": {"format": 5}}), "its metadata is not a table of text"),
])
def test_a_damaged_header_is_refused_before_any_tensor_is_read(bundle_file, edit, message):
    rewrite(bundle_file, edit)
    with pytest.raises(CheckpointError, match=message):
        read_header(bundle_file)


def test_a_file_truncated_while_it_is_read_is_an_error_not_a_signal(bundle_file, monkeypatch):
    """The tensors are read after the header; shrinking the file in between used to be SIGBUS (mmap)."""
    header = read_header(bundle_file)
    data = bundle_file.read_bytes()
    bundle_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="tiny.safetensors: the file was truncated while it was read"):
        read_tensors(bundle_file, header)
    bundle_file.write_bytes(data)
    read_header_now = checkpoints.read_header

    def shrink_after_reading_the_header(path):
        found = read_header_now(path)
        bundle_file.write_bytes(data[: len(data) - 64])
        return found

    monkeypatch.setattr(checkpoints, "read_header", shrink_after_reading_the_header)
    with pytest.raises(CheckpointError, match="truncated while it was read"):
        load_bundle(bundle_file)


def test_tensors_read_without_a_map_are_exactly_the_saved_ones(bundle_file):
    bundle = mlp_bundle()
    loaded = load_bundle(bundle_file)
    for key, value in bundle.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value, rtol=0, atol=0)
    header = read_header(bundle_file)
    assert header.metadata["format"] == checkpoints.FORMAT and header.tensors["model.inp.weight"].shape == (16, 2)
