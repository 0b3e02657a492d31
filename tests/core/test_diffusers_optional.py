"""diffusers and transformers are an optional extra: nothing imports them until a pipeline is opened,
and opening one without them says how to add them."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from core import load_model


def test_the_engine_imports_neither_library():
    code = ("import sys, core, core.diffusers, core.commands.sample, core.registry; "
            "print('diffusers' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_opening_a_pipeline_without_diffusers_says_how_to_add_it(tmp_path, monkeypatch):
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "scheduler").mkdir()
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"], "scheduler": ["diffusers", "DDPMScheduler"]}))
    (folder / "unet" / "config.json").write_text("{}")
    save_file({"w": torch.zeros(3)}, folder / "unet" / "diffusion_pytorch_model.safetensors")
    (folder / "scheduler" / "scheduler_config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r'needs the optional packages diffusers and transformers.*\[diffusers\]'):
        load_model(folder, "cpu")
