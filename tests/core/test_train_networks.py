"""The networks behind the built-in image models: the patched UNet (and its v parametrization),
the judge and the noise-aware conv classifier, and the network-file format they are stored in."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from core.checkpoints import CheckpointError
from core.models import build_network
from core.models.patched_unet import PatchedUNet
from core.netfile import NetworkInfo, load_network, save_network
from core.schedule import Schedule

SMALL = dict(image_size=16, in_channels=2, model_channels=32, out_channels=2, num_res_blocks=1,
             attention_resolutions=[2], channel_mult=[1, 2], num_classes=4, num_head_channels=32)


def randomized(module: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


def test_patched_unet_is_a_unet_between_unshuffle_and_shuffle():
    model = randomized(PatchedUNet(patch=2, **SMALL))
    x, t, y = torch.randn(3, 2, 16, 16), torch.tensor([0, 400, 999]), torch.tensor([0, 3, 1])
    inner = model.unet(F.pixel_unshuffle(x, 2), t, y)
    assert inner.shape == (3, 8, 8, 8)
    assert torch.equal(model(x, t, y), F.pixel_shuffle(inner, 2))
    assert all(k.startswith("unet.") for k in model.state_dict())
    assert "alphas_cumprod" not in model.state_dict()  # derived from the config, not stored


def test_v_parametrization_returns_eps():
    eps_model = randomized(PatchedUNet(patch=4, **SMALL))
    v_model = PatchedUNet(patch=4, parametrization="v", schedule="cosine", num_timesteps=500, **SMALL)
    v_model.load_state_dict(eps_model.state_dict())
    v_model.eval()
    abar = torch.tensor(Schedule.from_name("cosine", 500).alphas_cumprod, dtype=torch.float32)
    x, t, y = torch.randn(3, 2, 16, 16), torch.tensor([0, 250, 499]), torch.tensor([2, 0, 3])
    v = eps_model(x, t, y)  # the same UNet's raw output, read as v
    a = abar[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(v_model(x, t, y), a.sqrt() * v + (1 - a).sqrt() * x)
    assert not torch.allclose(v, v_model(x, t, y))


@pytest.mark.parametrize("kwargs, message", [
    ({"patch": 3}, "cannot be cut into 3×3 patches"),
    ({"parametrization": "x0"}, "Unknown parametrization"),
    ({"parametrization": "v", "out_channels": 4}, "as many output channels"),
])
def test_patched_unet_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PatchedUNet(**{**SMALL, **kwargs})


def test_judge_and_classifier_shapes():
    judge = build_network("judge", {"in_channels": 3, "num_classes": 7, "width": 16}).eval()
    x = torch.randn(5, 3, 32, 32)
    assert judge(x).shape == (5, 7) and judge.features(x).shape == (5, 64)
    torch.testing.assert_close(judge.head(judge.features(x)), judge(x))
    clf = build_network("conv-classifier", {"in_channels": 3, "num_classes": 7, "width": 16}).eval()
    t = torch.tensor([0, 10, 100, 500, 999])
    assert clf(x, t).shape == (5, 7)
    assert not torch.allclose(clf(x, t), clf(x, t.flip(0)))  # the timestep matters


def test_network_file_round_trip_and_errors(tmp_path):
    module = randomized(build_network("conv-classifier", {"num_classes": 3, "width": 8}))
    info = NetworkInfo("tiny", "classifier", "conv-classifier", {"num_classes": 3, "width": 8}, ("a", "b", "c"), "n")
    path = save_network(module, info, tmp_path / "sub" / "tiny.safetensors")
    loaded, loaded_info = load_network(path, role="classifier")
    assert loaded_info == info and not loaded.training
    for a, b in zip(module.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    path.with_name("junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_network(path.with_name("junk.safetensors"))
    bigger = NetworkInfo("tiny", "classifier", "conv-classifier", {"num_classes": 3, "width": 16}, ("a", "b", "c"))
    save_network(module, bigger, tmp_path / "wrong.safetensors")
    with pytest.raises(CheckpointError, match="shape"):
        load_network(tmp_path / "wrong.safetensors")
