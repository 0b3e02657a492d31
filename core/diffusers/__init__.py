"""Hugging Face diffusers pipelines (pixel-space UNet2DModel, DiT, Stable Diffusion 1.x/2.x folders, and
single-file Stable Diffusion checkpoints) as `ModelBundle`s.

Schedules come from the pipeline's scheduler config (schedules.py, no diffusers needed); diffusers and
transformers themselves are imported only when a pipeline is opened (deps.py), offline.
"""
from .bundle import DiffusersBundle
from .files import is_pipeline_folder
from .loader import PipelineInfo, inspect_pipeline, load_pipeline
from .schedules import inference_timesteps, pipeline_schedule, train_alphas_cumprod
from .single_file import inspect_single_file, is_single_file_checkpoint, load_single_file

__all__ = [
    "DiffusersBundle", "PipelineInfo", "inference_timesteps", "inspect_pipeline", "inspect_single_file",
    "is_pipeline_folder", "is_single_file_checkpoint", "load_pipeline", "load_single_file", "pipeline_schedule",
    "train_alphas_cumprod",
]
