"""A small patched UNet with random weights everywhere (no zero-initialised output layer), whose network
core/compiled.py can compile, shared by the engine's tests (tests/core/test_compiled.py) and the app's
(tests/app/test_compiling.py). The compile itself (about 20 s on 2 cores) is done once per test session by
the `compiled_package` fixture in tests/conftest.py."""
from __future__ import annotations

import shutil

import pytest
import torch

from core import ModelBundle, ModelConfig
from core.models import build_network

NETWORK = {"image_size": 8, "in_channels": 1, "model_channels": 32, "out_channels": 1, "num_res_blocks": 1,
           "attention_resolutions": [2], "channel_mult": [1, 2], "num_classes": 4, "num_head_channels": 32,
           "patch": 2, "parametrization": "v"}


def small_unet_bundle(name: str = "tiny-unet") -> ModelBundle:
    """Three digit-like classes and the null label, 1×8×8 images; the same weights at every call."""
    config = ModelConfig(architecture="unet-patched", data_shape=(1, 8, 8), network=NETWORK, num_classes=3,
                         class_names=("a", "b", "c"), null_label=True)
    torch.manual_seed(0)
    model = build_network("unet-patched", NETWORK)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return ModelBundle(name, config, model.eval())


def require_compiler() -> None:
    """Skip the test where AOTInductor has no C++ compiler to build with."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler here for AOTInductor (.ci/run installs g++)")
