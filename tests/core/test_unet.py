"""The guided-diffusion UNet and classifier: layout (key names, shapes) and behaviour of every option."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from core.models import build_network
from core.models.classifier import EncoderUNetModel
from core.models.unet import UNetModel
from core.models.unet_blocks import AttentionBlock, GroupNorm32, qkv_attention


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter with N(0, scale²): zero-initialised outputs would hide everything."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module.eval()


def small_unet(**overrides) -> UNetModel:
    kw = dict(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
              attention_resolutions=[2], channel_mult=[1, 2], num_heads=2)
    kw.update(overrides)
    return UNetModel(**kw)


def small_classifier(**overrides) -> EncoderUNetModel:
    kw = dict(image_size=16, in_channels=3, model_channels=32, out_channels=5, num_res_blocks=1,
              attention_resolutions=[2], channel_mult=[1, 2], num_head_channels=32, pool="attention")
    kw.update(overrides)
    return EncoderUNetModel(**kw)


X = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
T = torch.tensor([10, 900])


# --- layout of the published 64×64 checkpoints, from the README's flags --------------------------

def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_published_64x64_diffusion_layout():
    # --num_channels 192 --num_res_blocks 3 --attention_resolutions 32,16,8 (rates 2,4,8) --class_cond
    # --learn_sigma --num_head_channels 64 --resblock_updown --use_scale_shift_norm, channel_mult 1,2,3,4
    with torch.device("meta"):
        model = build_network("unet", dict(
            image_size=64, in_channels=3, model_channels=192, out_channels=6, num_res_blocks=3,
            attention_resolutions=[2, 4, 8], dropout=0.1, channel_mult=[1, 2, 3, 4], num_classes=1000,
            num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True,
            use_new_attention_order=True))
    shapes = _shapes(model)
    expected = {
        "time_embed.0.weight": (768, 192), "time_embed.2.weight": (768, 768),
        "label_emb.weight": (1000, 768),
        "input_blocks.0.0.weight": (192, 3, 3, 3),
        "input_blocks.1.0.in_layers.0.weight": (192,),
        "input_blocks.1.0.emb_layers.1.weight": (384, 768),  # scale and shift: 2 × 192
        "input_blocks.1.0.out_layers.3.weight": (192, 192, 3, 3),
        "input_blocks.4.0.in_layers.2.weight": (192, 192, 3, 3),  # the down-sampling ResBlock
        "input_blocks.5.0.skip_connection.weight": (384, 192, 1, 1),
        "input_blocks.5.1.qkv.weight": (1152, 384, 1), "input_blocks.5.1.proj_out.weight": (384, 384, 1),
        "middle_block.1.qkv.weight": (2304, 768, 1), "middle_block.2.out_layers.3.weight": (768, 768, 3, 3),
        "output_blocks.0.0.in_layers.0.weight": (1536,),
        "output_blocks.0.0.skip_connection.weight": (768, 1536, 1, 1),
        "output_blocks.3.2.in_layers.2.weight": (768, 768, 3, 3),  # the up-sampling ResBlock
        "output_blocks.15.0.skip_connection.weight": (192, 384, 1, 1),
        "out.0.weight": (192,), "out.2.weight": (6, 192, 3, 3), "out.2.bias": (6,),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert sum(k.startswith("input_blocks.") and k.endswith(".0.weight") and k.count(".") == 3
               for k in shapes) == 1  # only the stem is a bare conv
    assert len({k.split(".")[1] for k in shapes if k.startswith("input_blocks.")}) == 16
    assert len({k.split(".")[1] for k in shapes if k.startswith("output_blocks.")}) == 16
    assert not any("op.weight" in k or "upsample" in k for k in shapes)
    assert round(sum(math.prod(s) for s in shapes.values()) / 1e6) == 296  # the paper's 296M


def test_published_64x64_classifier_layout():
    # --classifier_width 128 --classifier_depth 4, attention 32,16,8, attention pooling, 64-channel heads
    with torch.device("meta"):
        clf = build_network("unet-classifier", dict(
            image_size=64, in_channels=3, model_channels=128, out_channels=1000, num_res_blocks=4,
            attention_resolutions=[2, 4, 8], channel_mult=[1, 2, 3, 4], num_head_channels=64,
            use_scale_shift_norm=True, resblock_updown=True, pool="attention"))
    shapes = _shapes(clf)
    expected = {
        "time_embed.0.weight": (512, 128),
        "middle_block.1.qkv.weight": (1536, 512, 1),
        "out.0.weight": (512,),
        "out.2.positional_embedding": (512, 8 * 8 + 1),
        "out.2.qkv_proj.weight": (1536, 512, 1),
        "out.2.c_proj.weight": (1000, 512, 1), "out.2.c_proj.bias": (1000,),
    }
    assert {k: shapes.get(k) for k in expected} == expected
    assert not any(k.startswith(("output_blocks", "label_emb")) for k in shapes)


# --- behaviour --------------------------------------------------------------------------------------

def test_fresh_networks_output_exact_zeros():
    # guided-diffusion zero-initialises the last conv (and every residual branch's last conv).
    assert torch.equal(small_unet()(X, T), torch.zeros(2, 3, 16, 16))
    assert torch.equal(small_classifier(pool="adaptive")(X, T), torch.zeros(2, 5))


@pytest.mark.parametrize("scale_shift,updown,new_order,head_channels,cond,learn_sigma",
                         list(itertools.product([False, True], [False, True], [False, True],
                                                [-1, 16], [False, True], [False, True]))[::3])
def test_every_option_builds_and_runs(scale_shift, updown, new_order, head_channels, cond, learn_sigma):
    model = randomize(small_unet(use_scale_shift_norm=scale_shift, resblock_updown=updown,
                                 use_new_attention_order=new_order, num_head_channels=head_channels,
                                 num_classes=4 if cond else None, out_channels=6 if learn_sigma else 3))
    y = torch.tensor([0, 3]) if cond else None
    out = model(X, T, y)
    assert out.shape == (2, 6 if learn_sigma else 3, 16, 16) and torch.isfinite(out).all()
    assert torch.equal(out, model(X, T, y))  # eval mode is deterministic
    keys = model.state_dict()
    assert ("input_blocks.2.0.op.weight" in keys) != updown
    assert ("input_blocks.2.0.in_layers.2.weight" in keys) == updown
    assert keys["input_blocks.1.0.emb_layers.1.weight"].shape[0] == (64 if scale_shift else 32)
    assert ("label_emb.weight" in keys) == cond


def test_heads_follow_num_head_channels_else_num_heads():
    model = small_unet(num_heads=4, num_head_channels=-1, num_heads_upsample=2)
    assert model.middle_block[1].num_heads == 4
    assert model.output_blocks[0][1].num_heads == 2  # num_heads_upsample applies on the way up
    model = small_unet(num_heads=4, num_head_channels=16)
    assert model.middle_block[1].num_heads == 64 // 16 and model.output_blocks[0][1].num_heads == 4


def test_attention_orders_match_their_channel_layouts():
    gen = torch.Generator().manual_seed(1)
    heads, c, length = 2, 3, 5
    qkv = torch.randn(1, 3 * heads * c, length, generator=gen)

    def reference(q, k, v):  # per head: out[:, t] = Σ_s softmax_s(q_t·k_s/√c) v[:, s]
        w = torch.softmax(q.T @ k / math.sqrt(c), dim=-1)
        return v @ w.T

    legacy = qkv[0].reshape(heads, 3 * c, length)
    expect_legacy = torch.cat([reference(*legacy[h].split(c)) for h in range(heads)])
    q, k, v = (part.reshape(heads, c, length) for part in qkv[0].chunk(3))
    expect_new = torch.cat([reference(q[h], k[h], v[h]) for h in range(heads)])
    tokens = qkv.transpose(1, 2)  # token-major, as the blocks hand it over
    torch.testing.assert_close(qkv_attention(tokens, heads, legacy=True)[0].T, expect_legacy)
    torch.testing.assert_close(qkv_attention(tokens, heads, legacy=False)[0].T, expect_new)
    assert not torch.allclose(expect_legacy, expect_new)


def test_labels_condition_the_output_and_are_checked():
    model = randomize(small_unet(num_classes=3))
    assert not torch.allclose(model(X, T, torch.tensor([0, 0])), model(X, T, torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="needs class labels"):
        model(X, T)
    with pytest.raises(ValueError, match="takes no class labels"):
        randomize(small_unet())(X, T, torch.tensor([0, 1]))


def test_timestep_changes_the_output():
    model = randomize(small_unet())
    assert not torch.allclose(model(X, torch.tensor([10, 10])), model(X, torch.tensor([500, 500])))


def test_dropout_acts_only_in_training():
    model = randomize(small_unet(dropout=0.5))
    assert torch.equal(model(X, T), model(X, T))
    model.train()
    assert not torch.equal(model(X, T), model(X, T))


def test_fractional_channel_mult_and_average_pool_resampling():
    model = randomize(small_unet(model_channels=64, channel_mult=[0.5, 1], conv_resample=False))
    keys = model.state_dict()
    assert keys["input_blocks.0.0.weight"].shape == (32, 3, 3, 3) and keys["out.2.weight"].shape == (3, 32, 3, 3)
    assert not any(".op." in k or ".conv." in k for k in keys)
    assert model(X, T).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_classifier_pools_give_logits_with_input_gradients(pool):
    clf = randomize(small_classifier(pool=pool, resblock_updown=True, use_scale_shift_norm=True))
    x = X.clone().requires_grad_(True)
    logits = clf(x, T)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits.log_softmax(-1)[:, 1].sum(), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_classifier_head_keys():
    assert "out.3.weight" in small_classifier(pool="adaptive").state_dict()
    assert "out.1.weight" in small_classifier(pool="spatial_v2").state_dict()  # its GroupNorm over 2048
    assert "out.2.weight" in small_classifier(pool="spatial").state_dict()


def test_group_norm_computes_in_float32_and_keeps_the_dtype():
    norm = randomize(GroupNorm32(32), scale=1.0)
    x = torch.randn(2, 32, 4, 4) * 100 + 1000
    for dtype in (torch.bfloat16, torch.float16):
        low = norm(x.to(dtype))
        assert low.dtype == dtype
        float32 = torch.nn.functional.group_norm(x.to(dtype).float(), 32, norm.weight, norm.bias)
        torch.testing.assert_close(low.float(), float32.to(dtype).float(), rtol=1e-2, atol=2e-2)


def test_group_norm_of_half_activations_makes_no_float32_copy():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Casts(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.float32_copies = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.numel() >= 2 * 32 * 16:
                self.float32_copies.append(func.__name__)
            return out

    norm = GroupNorm32(32)
    with Casts() as casts, torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm(torch.randn(2, 32, 4, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert casts.float32_copies == []


@pytest.mark.parametrize("kwargs,message", [
    (dict(model_channels=24), "32 normalisation groups"),
    (dict(image_size=10, channel_mult=[1, 2, 2]), "cannot be halved"),
    (dict(num_head_channels=24), "not a multiple of num_head_channels"),
    (dict(num_heads=3), "cannot be split into 3 heads"),
    (dict(attention_resolutions=[0]), "downsample rates"),
])
def test_bad_settings_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        small_unet(**kwargs)


def test_bad_classifier_settings_are_explained():
    with pytest.raises(ValueError, match="Unknown classifier pooling"):
        small_classifier(pool="max")
    with pytest.raises(ValueError, match="needs num_head_channels"):
        small_classifier(num_head_channels=-1)


def test_build_network_takes_json_values():
    model = build_network("unet", dict(image_size=16, in_channels=1, model_channels=32, out_channels=1,
                                       num_res_blocks=1, attention_resolutions=[2], channel_mult=[1, 2],
                                       num_classes=11))
    assert model.label_emb.weight.shape == (11, 128)
    assert isinstance(model.middle_block[1], AttentionBlock)


def test_networks_run_under_autocast_close_to_float32():
    # The bundle's fp16 precision runs these under CUDA autocast; CPU bfloat16 autocast takes the same
    # mixed-dtype paths (float32 norms, half convs, skip concatenation, attention, pooling heads).
    model = randomize(small_unet(num_classes=3, use_scale_shift_norm=True, resblock_updown=True), scale=0.05)
    clf = randomize(small_classifier(), scale=0.05)
    y = torch.tensor([0, 2])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, low_logits = model(X, T, y), clf(X, T)
    assert low.dtype == torch.bfloat16 and low_logits.dtype == torch.bfloat16
    ref, ref_logits = model(X, T, y), clf(X, T)
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()
    assert (low_logits.float() - ref_logits).abs().max() < 0.05 * ref_logits.abs().max()


def test_attention_hands_the_fused_kernels_the_layout_they_need(monkeypatch):
    # Flash / memory-efficient attention (CPU and CUDA) take only (B, heads, T, c) with a contiguous
    # last dimension; anything else silently falls back to materialising every T×T weight matrix.
    from core.models import unet_blocks

    seen = []
    sdpa = unet_blocks.F.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append([(p.dim(), p.stride(-1)) for p in (q, k, v)])
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(unet_blocks.F, "scaled_dot_product_attention", spy)
    qkv = torch.randn(2, 10, 3 * 2 * 8)
    for legacy in (True, False):
        assert qkv_attention(qkv, 2, legacy).shape == (2, 10, 16)
    assert seen == [[(4, 1)] * 3] * 2
