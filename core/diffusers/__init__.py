"""Hugging Face diffusers pipelines (pixel-space UNet2DModel, DiT, Stable Diffusion 1.x/2.x) as `ModelBundle`s.

Schedules come from the pipeline's scheduler config (schedules.py, no diffusers needed); diffusers and
transformers themselves are imported only when a pipeline is opened (deps.py), offline.
"""
from .bundle import DiffusersBundle
from .files import is_pipeline_folder
from .loader import PipelineInfo, inspect_pipeline, load_pipeline
from .schedules import inference_timesteps, pipeline_schedule, train_alphas_cumprod

__all__ = [
    "DiffusersBundle", "PipelineInfo", "inference_timesteps", "inspect_pipeline", "is_pipeline_folder",
    "load_pipeline", "pipeline_schedule", "train_alphas_cumprod",
]
