"""The published guided-diffusion checkpoints, by file name, with the flags its README gives for them.

Opening `64x64_diffusion.pt` with `64x64_classifier.pt` needs no flags: both names are found here.
A preset also supplies what the weights cannot tell (noise schedule, attention heads and order).
"""
from __future__ import annotations

from .flags import Flags, parse_flags

_LSUN = ("--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --dropout 0.1 "
         "--image_size 256 --learn_sigma True --noise_schedule linear --num_channels 256 "
         "--num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True "
         "--use_scale_shift_norm True")

MODEL_PRESETS: dict[str, str] = {
    "64x64_diffusion.pt": (
        "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 "
        "--image_size 64 --learn_sigma True --noise_schedule cosine --num_channels 192 "
        "--num_head_channels 64 --num_res_blocks 3 --resblock_updown True --use_new_attention_order True "
        "--use_fp16 True --use_scale_shift_norm True"),
    "128x128_diffusion.pt": (
        "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 128 "
        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_heads 4 --num_res_blocks 2 "
        "--resblock_updown True --use_fp16 True --use_scale_shift_norm True"),
    "256x256_diffusion.pt": (
        "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 256 "
        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
        "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True"),
    "256x256_diffusion_uncond.pt": (
        "--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --image_size 256 "
        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
        "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True"),
    "512x512_diffusion.pt": (
        "--attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 512 "
        "--learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
        "--num_res_blocks 2 --resblock_updown True --use_fp16 False --use_scale_shift_norm True"),
    "lsun_bedroom.pt": _LSUN,
    "lsun_cat.pt": _LSUN,
    "lsun_horse.pt": _LSUN,
    "lsun_horse_nodropout.pt": _LSUN.replace("--dropout 0.1", "--dropout 0.0"),
}

# The classifiers use script_util's classifier defaults (width 128, attention 32,16,8, scale-shift,
# resblock up/down, attention pooling); the README adds --classifier_depth 4 for the 64×64 one.
CLASSIFIER_PRESETS: dict[str, str] = {
    "64x64_classifier.pt": "--image_size 64 --classifier_depth 4",
    "128x128_classifier.pt": "--image_size 128 --classifier_depth 2",
    "256x256_classifier.pt": "--image_size 256",
    "512x512_classifier.pt": "--image_size 512",
}

UNSUPPORTED = {
    "64_256_upsampler.pt": "super-resolution models are not supported",
    "128_512_upsampler.pt": "super-resolution models are not supported",
}


def model_preset(file_name: str) -> Flags | None:
    """The flags of a published diffusion checkpoint, or None for an unknown name."""
    if file_name in UNSUPPORTED:
        raise ValueError(f"{file_name}: {UNSUPPORTED[file_name]}.")
    text = MODEL_PRESETS.get(file_name)
    return None if text is None else parse_flags(text)


def classifier_preset(file_name: str) -> Flags | None:
    """The flags of a published classifier checkpoint, or None for an unknown name."""
    text = CLASSIFIER_PRESETS.get(file_name)
    return None if text is None else parse_flags(text)
