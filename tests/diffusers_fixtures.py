"""Tiny random diffusers pipelines, built from configs and saved with `save_pretrained` (no download), shared
by the engine's parity tests (tests/core/test_diffusers.py) and the app's tests. Callers import this module
after `pytest.importorskip("diffusers")` / `("transformers")`."""
from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
import transformers


def tiny_vae() -> diffusers.AutoencoderKL:
    torch.manual_seed(1)
    return diffusers.AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8)


def tiny_pixel_unet(**extra) -> diffusers.UNet2DModel:
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=4, **extra)


def write_tokenizer(folder: Path) -> transformers.CLIPTokenizer:
    """A CLIP BPE vocabulary of single letters and two words, for transformers' CLIPTokenizer."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    merges = ["c a", "ca t</w>", "d o", "do g</w>"]
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters),
              *(m.replace(" ", "") for m in merges)]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def save_pixel_pipeline(folder: Path) -> Path:
    """A DDPM pipeline of an 8×8 UNet2DModel (squaredcos schedule, trailing spacing)."""
    scheduler = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", variance_type="fixed_large",
                                        clip_sample=True, timestep_spacing="trailing")
    diffusers.DDPMPipeline(tiny_pixel_unet(), scheduler).save_pretrained(folder)
    return folder


def save_dit_pipeline(folder: Path) -> Path:
    """A DiT pipeline (1000 classes and null class 1000, 8×8 latents of a tiny VAE) with the hub's id2label."""
    torch.manual_seed(2)
    transformer = diffusers.DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, num_embeds_ada_norm=1000, norm_num_groups=32)
    with torch.no_grad():  # DiT zero-initialises its modulation and output layers: make them do something
        for p in transformer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    diffusers.DiTPipeline(transformer, tiny_vae(), diffusers.DDIMScheduler(clip_sample=False)).save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["id2label"] = {str(i): f"class number {i}" for i in range(1000)}  # as the hub's DiT folders carry it
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def save_sd_pipeline(folder: Path) -> Path:
    """A Stable Diffusion 1.x-shaped pipeline: CLIP text encoder (16 wide), tokenizer (model_max_length 77),
    8×8-latent UNet2DConditionModel, tiny VAE, DDIM with SD's scaled-linear schedule and steps_offset 1."""
    tokenizer = write_tokenizer(folder.parent / f"{folder.name}-vocab")
    torch.manual_seed(3)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8)
    scheduler = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    diffusers.StableDiffusionPipeline(vae=tiny_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                      scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                      requires_safety_checker=False).save_pretrained(folder)
    return folder
