"""diffusers pipelines through our loader and our one sampling loop, against diffusers itself.

Every pipeline here is a tiny random one built from a config (tests/diffusers_fixtures.py, shared with the
app's tests) and saved with save_pretrained.
Parity: the same x_T goes to the pipeline (`latents=`, or its randn patched for the pixel pipelines that
take no latents) and every per-step noise draw of the schedulers is replaced by the draw our NoiseStream
makes at that step, so both sides see identical inputs; the final latents must then agree to 1e-4
relative, while guidance moves them by far more.
"""
import json
import re
import shutil

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from core import Guidance, SamplingRequest, final_sample, load_model
from core.noise import NoiseStream

from ..diffusers_fixtures import save_dit_pipeline, save_pixel_pipeline, save_sd_pipeline, tiny_pixel_unet

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The networks here are tiny: one thread is as fast, and a busy machine cannot stall its peers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def noise(seed, batch, shape, steps):
    """Our x_T and a function giving, call by call, the per-step draws of our NoiseStream."""
    stream = NoiseStream(seed, batch, shape, steps, CPU)
    return stream.initial(), stream


def patch_scheduler_noise(monkeypatch, module: str, stream: NoiseStream, doubled: bool = False):
    """Make diffusers' scheduler `module` draw our per-step noise (twice over for DiT's CFG batch)."""
    def draw(shape, **_):
        z = stream.step()
        return torch.cat([z, z]) if doubled and shape[0] == 2 * len(z) else z

    monkeypatch.setattr(f"diffusers.schedulers.{module}.randn_tensor", draw)


# --- tiny pipelines ----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pixel_folder(tmp_path_factory):
    return save_pixel_pipeline(tmp_path_factory.mktemp("pixel") / "ddpm-tiny")


@pytest.fixture(scope="session")
def dit_folder(tmp_path_factory):
    return save_dit_pipeline(tmp_path_factory.mktemp("dit") / "dit-tiny")


@pytest.fixture(scope="session")
def sd_folders(tmp_path_factory):
    """{"epsilon": folder, "v_prediction": folder}: one tiny Stable Diffusion, two prediction types."""
    root = tmp_path_factory.mktemp("sd")
    folders = {"epsilon": save_sd_pipeline(root / "sd-tiny"), "v_prediction": root / "sd-tiny-v"}
    shutil.copytree(folders["epsilon"], folders["v_prediction"])
    config_path = folders["v_prediction"] / "scheduler" / "scheduler_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "prediction_type": "v_prediction"}))
    return folders


def reference(cls, folder, scheduler=None):
    pipe = cls.from_pretrained(folder)
    if scheduler is not None:
        pipe.scheduler = scheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --- pixel-space UNet2DModel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_pixel_pipeline_matches_diffusers(pixel_folder, sampler, monkeypatch):
    bundle = load_model(pixel_folder, "cpu")
    assert not bundle.is_latent and bundle.config.num_classes == 0 and bundle.config.clip == "clip"
    n, eta = 10, (0.5 if sampler == "ddim" else 0.0)
    ours = final_sample(SamplingRequest("p", sampler=sampler, steps=str(n), eta=eta, seed=3, batch=2), bundle).x
    x_t, stream = noise(3, 2, (3, 8, 8), n)
    if sampler == "ddim":  # DDIMPipeline converts the folder's DDPMScheduler config to DDIM, as it always does
        pipe, module = reference(diffusers.DDIMPipeline, pixel_folder), "pipelines.ddim.pipeline_ddim"
        kwargs = {"eta": eta}
    else:
        pipe, module, kwargs = reference(diffusers.DDPMPipeline, pixel_folder), "pipelines.ddpm.pipeline_ddpm", {}
    monkeypatch.setattr(f"diffusers.{module}.randn_tensor", lambda *a, **k: x_t.clone())
    patch_scheduler_noise(monkeypatch, f"scheduling_{sampler}", stream)
    images = pipe(batch_size=2, num_inference_steps=n, output_type="pt", **kwargs).images
    # trailing spacing ends on t = 99: diffusers adds noise at that last step too, and so do we
    torch.testing.assert_close((ours / 2 + 0.5).clamp(0, 1), images, rtol=0, atol=1e-5)


def test_class_conditional_unet_samples_its_labels_like_the_scheduler_loop(tmp_path):
    folder = tmp_path / "cond"
    diffusers.DDPMPipeline(tiny_pixel_unet(num_class_embeds=10), diffusers.DDIMScheduler()).save_pretrained(folder)
    bundle = load_model(folder, "cpu")
    assert bundle.config.num_classes == 10 and not bundle.config.null_label
    labels, n = (2, 7), 6
    ours = final_sample(SamplingRequest("c", steps=str(n), seed=5, batch=2, label=labels), bundle).x
    # No diffusers pipeline passes class labels to a UNet2DModel: the reference is the scheduler loop.
    scheduler, unet = diffusers.DDIMScheduler.from_pretrained(folder / "scheduler"), bundle.model.unet
    scheduler.set_timesteps(n)
    x, _ = noise(5, 2, (3, 8, 8), n)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t, class_labels=torch.tensor(labels)).sample, t, x).prev_sample
    assert rel(ours, x) < 1e-5
    other = final_sample(SamplingRequest("c", steps=str(n), seed=5, batch=2, label=(3, 3)), bundle).x
    assert rel(other, x) > 1e-2
    with pytest.raises(ValueError, match="null label"):  # a label model without a null class has no CFG
        final_sample(SamplingRequest("c", steps="2", label=2, guidance=Guidance("cfg", weight=1.0)), bundle)


# --- schedules and step conventions, with an analytic network ---------------------------------------------

class AnalyticUNet(torch.nn.Module):
    """Stands in for a UNet2DModel: a fixed smooth function of (x_t, t), read as the config's prediction."""

    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"in_channels": 2, "out_channels": 2, "sample_size": 4,
                                          "num_class_embeds": None, "class_embed_type": None})

    def forward(self, x, t, class_labels=None):
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1, 1, 1)
        return type("Out", (), {"sample": 0.9 * torch.tanh(1.5 * x) + 0.3 * torch.cos(x + t / 250)})


def analytic_bundle(scheduler_config):
    from core.diffusers.loader import PipelineInfo, build_bundle

    info = PipelineInfo(CPU, "TestPipeline", "pixel", {}, {})
    return build_bundle("analytic", info, {"unet": AnalyticUNet()}, scheduler_config, {}, CPU, "fp32")


SD1 = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, set_alpha_to_one=False,
           clip_sample=False)
SCHEDULER_CONFIGS = {
    "sd1-leading-offset": SD1,
    "cosine-trailing-clipped": dict(beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing"),
    "linear-linspace-v": dict(timestep_spacing="linspace", prediction_type="v_prediction", clip_sample=False),
    "trained-betas-x0-large": dict(trained_betas=torch.linspace(1e-4, 0.03, 300).tolist(), num_train_timesteps=300,
                                   prediction_type="sample", variance_type="fixed_large"),
    "zero-snr-v-trailing": dict(SD1, rescale_betas_zero_snr=True, timestep_spacing="trailing",
                                prediction_type="v_prediction"),
}


@pytest.mark.parametrize("name", SCHEDULER_CONFIGS)
@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_every_step_follows_the_diffusers_scheduler(name, sampler, eta, monkeypatch):
    """ᾱ (beta_schedule, trained_betas, zero-SNR), the timesteps for N steps (spacing, offset), the ᾱ each
    step lands on (DDIM's t − T//N and final ᾱ, DDPM's next step), ε/v/x0 predictions, x̂0 clipping and the
    noise of the last step all as DDIMScheduler / DDPMScheduler do them."""
    config = SCHEDULER_CONFIGS[name]
    if "zero-snr" in name and eta > 0:
        pytest.skip("diffusers' DDIM takes √(1−ᾱ_prev−σ²) of a rounding-negative number at ᾱ_T = 0: NaN")
    bundle = analytic_bundle(config)
    for n in (7, 25):
        ours = final_sample(SamplingRequest("a", sampler=sampler, steps=str(n), eta=eta, seed=1, batch=2), bundle).x
        scheduler = (diffusers.DDIMScheduler if sampler == "ddim" else diffusers.DDPMScheduler).from_config(config)
        scheduler.set_timesteps(n)
        x, stream = noise(1, 2, (2, 4, 4), n)
        patch_scheduler_noise(monkeypatch, "scheduling_ddpm", stream)
        net = AnalyticUNet()
        for t in scheduler.timesteps:
            out = net(x, t).sample
            if sampler == "ddim":
                x = scheduler.step(out, t, x, eta=eta, variance_noise=stream.step()).prev_sample
            else:
                x = scheduler.step(out, t, x).prev_sample
        tolerance = 1e-3 if "zero-snr" in name else 1e-4  # ᾱ_T = 2⁻²⁴: x̂0 = (x − √(1−ᾱ)ε)/√ᾱ loses digits
        assert rel(ours, x) < tolerance, (n, rel(ours, x))


def test_guided_diffusion_respacing_stays_available():
    bundle = analytic_bundle(SD1)
    assert list(bundle.sampling_schedule("10", "ddim").timesteps[::-1]) == list(range(901, 0, -100))
    assert list(bundle.sampling_schedule("ddim10", "ddim").timesteps[::-1]) == list(range(900, -1, -100))
    spaced = bundle.sampling_schedule("3,2", "ddpm")
    assert list(spaced.timesteps) == [0, 250, 499, 500, 999] and spaced.convention == "guided-diffusion"
    assert final_sample(SamplingRequest("a", steps="ddim10"), bundle).x.isfinite().all()


# --- DiT -------------------------------------------------------------------------------------------------------

def dit_reference(folder, sampler, labels, gamma, n, x_t, stream, monkeypatch):
    """DiTPipeline's final latents (what it hands the VAE, times the scaling factor) and its images."""
    pipe = reference(diffusers.DiTPipeline, folder, diffusers.DDPMScheduler if sampler == "ddpm" else None)
    monkeypatch.setattr("diffusers.pipelines.dit.pipeline_dit.randn_tensor", lambda *a, **k: x_t.clone())
    patch_scheduler_noise(monkeypatch, "scheduling_ddpm", stream, doubled=True)
    seen = {}
    decode = pipe.vae.decode
    monkeypatch.setattr(pipe.vae, "decode", lambda z, **k: seen.setdefault("z", z) is None or decode(z, **k))
    images = pipe(class_labels=list(labels), guidance_scale=gamma, num_inference_steps=n, output_type="pt").images
    return seen["z"] * pipe.vae.config.scaling_factor, images


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_dit_with_a_class_label_matches_diffusers(dit_folder, sampler, monkeypatch):
    bundle = load_model(dit_folder, "cpu")
    cfg = bundle.config
    assert bundle.is_latent and cfg.num_classes == 1000 and cfg.null_label and cfg.learn_sigma
    assert cfg.class_names[7] == "class number 7" and cfg.variance == "fixed_small" and cfg.data_shape == (4, 8, 8)
    assert cfg.default_guidance_scale == 4.0
    labels, n, gamma = (5, 7), 8, 4.0
    request = SamplingRequest("dit", sampler=sampler, steps=str(n), seed=3, batch=2, label=labels,
                              guidance=Guidance("cfg", weight=gamma - 1))  # γ = 1 + w
    steps = list(final_sample.__globals__["sample"](request, bundle))
    ours = steps[-1].x
    x_t, stream = noise(3, 2, (4, 8, 8), n)
    torch.testing.assert_close(steps[0].x, x_t, rtol=0, atol=0)
    latents, images = dit_reference(dit_folder, sampler, labels, gamma, n, x_t, stream, monkeypatch)
    assert rel(ours, latents) < 1e-4
    torch.testing.assert_close(bundle.decode(ours) / 2 + 0.5, images, rtol=0, atol=1e-5)
    unguided = final_sample(request.replace(guidance=Guidance("cfg", weight=0.0)), bundle).x
    assert rel(unguided, latents) > 100 * 1e-4
    # The learned-variance half the pipeline drops is there for the engine's learned_range option.
    with pytest.raises(ValueError, match="makes 16×16 images only"):
        final_sample(request.replace(width=24), bundle)
    learned = final_sample(request.replace(sampler="ddpm", variance="learned_range"), bundle).x
    assert learned.isfinite().all() and rel(learned, final_sample(request.replace(sampler="ddpm"), bundle).x) > 1e-3


# --- Stable Diffusion ---------------------------------------------------------------------------------------------

def sd_request(sampler, n, **extra):
    return SamplingRequest("sd", sampler=sampler, steps=str(n), seed=3, batch=2, prompt="a cat", negative_prompt="dog",
                           guidance=Guidance("cfg", weight=6.5), **extra)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_stable_diffusion_cfg_with_prompt_and_negative_prompt_matches_diffusers(sd_folders, prediction, sampler,
                                                                                monkeypatch):
    folder = sd_folders[prediction]
    bundle = load_model(folder, "cpu")
    assert bundle.takes_prompt and bundle.is_latent and bundle.size_choice and bundle.image_size == (16, 16)
    assert bundle.config.default_guidance_scale == 7.5
    n = 8
    ours = final_sample(sd_request(sampler, n), bundle).x
    x_t, stream = noise(3, 2, (4, 8, 8), n)
    patch_scheduler_noise(monkeypatch, "scheduling_ddpm", stream)
    pipe = reference(diffusers.StableDiffusionPipeline, folder, diffusers.DDPMScheduler if sampler == "ddpm" else None)
    kwargs = dict(prompt="a cat", negative_prompt="dog", num_inference_steps=n, num_images_per_prompt=2,
                  latents=x_t, output_type="latent")
    latents = pipe(guidance_scale=7.5, **kwargs).images
    assert rel(ours, latents) < 1e-4
    stream.__init__(3, 2, (4, 8, 8), n, CPU)
    stream.initial()
    assert rel(pipe(guidance_scale=1.0, **kwargs).images, latents) > 100 * 1e-4  # guidance moves far more


def test_stable_diffusion_image_size_decode_and_unguided_branch(sd_folders):
    folder = sd_folders["epsilon"]
    bundle = load_model(folder, "cpu")
    pipe = reference(diffusers.StableDiffusionPipeline, folder)
    request = sd_request("ddim", 4, width=24, height=16)
    x_t, _ = noise(3, 2, (4, 8, 12), 4)
    assert bundle.sample_shape(request) == (4, 8, 12)
    ours = final_sample(request, bundle).x
    images = pipe(prompt="a cat", negative_prompt="dog", num_inference_steps=4, num_images_per_prompt=2, latents=x_t,
                  guidance_scale=7.5, width=24, height=16, output_type="pt").images
    torch.testing.assert_close(bundle.decode(ours) / 2 + 0.5, images, rtol=0, atol=1e-5)
    # "none" samples the unconditional branch, the negative prompt: the same as CFG at w = −1.
    plain = final_sample(request.replace(guidance=Guidance("none")), bundle).x
    torch.testing.assert_close(plain, final_sample(request.replace(guidance=Guidance("cfg", weight=-1.0)), bundle).x)
    assert bundle.preview(ours).shape == (2, 3, 8, 12)
    with pytest.raises(ValueError, match="prompt, not a class label"):
        final_sample(request.replace(label=1), bundle)


# --- loading -----------------------------------------------------------------------------------------------

def test_loading_never_touches_the_network(pixel_folder, monkeypatch):
    import socket

    def refuse(*_):
        raise AssertionError("network access while loading a pipeline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert load_model(pixel_folder, "cpu").name == "ddpm-tiny"


def test_a_missing_component_is_named(sd_folders, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(sd_folders["epsilon"], folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(ValueError, match="'vae' component \\(AutoencoderKL\\) is missing"):
        load_model(folder, "cpu")
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "text_encoder_2": ["transformers", "CLIPTextModel"]}))
    with pytest.raises(ValueError, match="two text encoders \\(SDXL\\)"):
        load_model(folder, "cpu")


def test_bin_weights_load_only_through_the_weights_only_unpickler(pixel_folder, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(pixel_folder, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(weights), folder / "unet" / "diffusion_pytorch_model.bin")
    weights.unlink()
    calls = []
    original = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or original(*a, **k))
    bundle = load_model(folder, "cpu")
    assert calls and all(calls) and bundle.model.unet.conv_in.weight.isfinite().all()

    class RunsCode:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"conv_in.weight": RunsCode()}, folder / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(ValueError, match="refused"):
        load_model(folder, "cpu")


def test_memory_is_stated_and_a_model_that_cannot_fit_is_refused(sd_folders, monkeypatch):
    from core.diffusers import inspect_pipeline

    info = inspect_pipeline(sd_folders["epsilon"])
    assert info.family == "sd" and info.components["text_encoder"] == "CLIPTextModel"
    assert info.memory_bytes("fp16") < info.memory_bytes("fp32")
    monkeypatch.setattr("core.diffusers.loader.free_memory", lambda device: 1024)
    with pytest.raises(ValueError, match="needs about .* GB .* but only 0.0 GB is free on CPU"):
        load_model(sd_folders["epsilon"], "cpu")
    with pytest.raises(ValueError, match="fp16 runs only on CUDA or MPS"):
        load_model(sd_folders["epsilon"], "cpu", precision="fp16")


def test_cli_writes_samples_labels_noise_and_latents(sd_folders, dit_folder, tmp_path):
    from core.cli import main

    out = tmp_path / "sd.npz"
    assert main(["sample", "--model", str(sd_folders["epsilon"]), "--prompt", "a cat", "--negative-prompt", "dog",
                 "--guidance", "cfg", "--weight", "6.5", "--steps", "3", "--seed", "4", "--num", "2",
                 "--width", "24", "--height", "16", "--out", str(out)]) == 0
    data = dict(np.load(out))
    assert data["samples"].shape == (2, 3, 16, 24) and data["x_T"].shape == data["latents"].shape == (2, 4, 8, 12)
    assert np.abs(data["samples"]).max() <= 1 and "labels" not in data
    x_t, _ = noise(4, 2, (4, 8, 12), 3)
    np.testing.assert_array_equal(data["x_T"], x_t.numpy())
    bundle = load_model(sd_folders["epsilon"], "cpu")
    request = sd_request("ddim", 3, width=24, height=16).replace(seed=4)
    np.testing.assert_allclose(data["latents"], final_sample(request, bundle).x.numpy(), rtol=0, atol=1e-6)
    assert main(["sample", "--model", str(dit_folder), "--label", "3", "--guidance", "cfg", "--weight", "3",
                 "--steps", "2", "--num", "1", "--out", str(tmp_path / "dit.npz")]) == 0
    data = dict(np.load(tmp_path / "dit.npz"))
    assert data["labels"].tolist() == [3] and data["samples"].shape == (1, 3, 16, 16)
    assert main(["sample", "--model", str(dit_folder), "--prompt", "a cat", "--out", str(tmp_path / "x.npz")]) == 2


# --- single-file checkpoints -----------------------------------------------------------------------------------

def ldm_layout(pipe) -> dict:
    """The tiny pipeline's weights in the original single-file (LDM) layout: diffusers' own conversion
    rules (diffusers.loaders.single_file_utils), run backwards, for layers_per_block = 1."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING as MAP

    def index(b, layer, first=0):
        return first + int(b) * 2 + int(layer)

    resnet = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
              ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
    up_has_attention = ["CrossAttn" in t for t in pipe.unet.config.up_block_types]
    out = {}
    for key, value in pipe.unet.state_dict().items():
        k = MAP["unet"]["layers"].get(key, key)
        if ".resnets." in k:
            for new, old in resnet:
                k = k.replace(f".{new}.", f".{old}.")
        rules = [
            (r"^down_blocks\.(\d+)\.resnets\.(\d+)", lambda m: f"input_blocks.{index(m[1], m[2], 1)}.0"),
            (r"^down_blocks\.(\d+)\.attentions\.(\d+)", lambda m: f"input_blocks.{index(m[1], m[2], 1)}.1"),
            (r"^down_blocks\.(\d+)\.downsamplers\.0\.conv", lambda m: f"input_blocks.{index(m[1], 1, 1)}.0.op"),
            (r"^mid_block\.resnets\.(\d+)", lambda m: f"middle_block.{2 * int(m[1])}"),
            (r"^mid_block\.attentions\.0", lambda m: "middle_block.1"),
            (r"^up_blocks\.(\d+)\.resnets\.(\d+)", lambda m: f"output_blocks.{index(m[1], m[2])}.0"),
            (r"^up_blocks\.(\d+)\.attentions\.(\d+)", lambda m: f"output_blocks.{index(m[1], m[2])}.1"),
            (r"^up_blocks\.(\d+)\.upsamplers\.0\.conv",
             lambda m: f"output_blocks.{index(m[1], 1)}.{2 if up_has_attention[int(m[1])] else 1}.conv"),
        ]
        for pattern, replace in rules:
            k = re.sub(pattern, replace, k)
        out["model.diffusion_model." + k] = value
    vae_map = {v: k for k, v in MAP["vae"].items()}
    blocks = len(pipe.vae.config.up_block_types)
    for key, value in pipe.vae.state_dict().items():
        k = {d: ldm for ldm, d in vae_map.items()}.get(key, key)
        k = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets", r"encoder.down.\1.block", k)
        k = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0", r"encoder.down.\1.downsample", k)
        k = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets", lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block", k)
        k = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0",
                   lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample", k)
        k = re.sub(r"mid_block\.resnets\.(\d+)", lambda m: f"mid.block_{int(m[1]) + 1}", k).replace("conv_shortcut",
                                                                                                    "nin_shortcut")
        if "mid_block.attentions.0" in k:
            k = k.replace("mid_block.attentions.0", "mid.attn_1").replace("group_norm", "norm")
            for new, old in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
                k = k.replace(f".{new}.", f".{old}.")
            value = value[:, :, None, None] if value.dim() == 2 else value
        out["first_stage_model." + k] = value
    for key, value in pipe.text_encoder.state_dict().items():  # transformers ≥ 5.6 dropped the text_model. level
        out["cond_stage_model.transformer." + (key if key.startswith("text_model.") else "text_model." + key)] = value
    return {k: v.contiguous() for k, v in out.items()}


def test_a_single_file_checkpoint_opens_as_the_same_model(sd_folders, tmp_path):
    from safetensors.torch import save_file

    from core.diffusers import load_single_file

    folder = sd_folders["epsilon"]
    pipe = reference(diffusers.StableDiffusionPipeline, folder)
    (tmp_path / "models").mkdir()
    checkpoint = tmp_path / "models" / "tiny-sd.safetensors"
    save_file(ldm_layout(pipe), checkpoint)
    configs = tmp_path / "configs"  # the tiny model's configs, as resources/diffusers/sd-v1 holds SD 1.x's
    shutil.copytree(folder, configs, ignore=shutil.ignore_patterns("*.safetensors", "vocab.json", "merges.txt"))
    with pytest.raises(ValueError, match="carries no tokenizer.*folder named tokenizer beside it"):
        load_single_file(checkpoint, "cpu", config=configs)
    shutil.copytree(folder / "tokenizer", tmp_path / "models" / "tokenizer")
    bundle = load_single_file(checkpoint, "cpu", config=configs)
    assert "tokenizer from" in bundle.config.description
    request = sd_request("ddim", 4)
    torch.testing.assert_close(final_sample(request, bundle).x, final_sample(request, load_model(folder, "cpu")).x,
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="neither SD 1.x .768. nor 2.x"):  # the shipped configs: real shapes only
        load_model(checkpoint, "cpu")
    from core.model_plan import plan_open

    assert "neither SD 1.x (768) nor 2.x" in plan_open(checkpoint).error


def openclip_layout(text_encoder) -> dict:
    """A CLIP text encoder's weights as SD 2.x single files hold them (OpenCLIP's layout under
    cond_stage_model.model.): diffusers' conversion rules (convert_open_clip_checkpoint), run backwards."""
    renames = [("text_model.", ""), ("embeddings.position_embedding.weight", "positional_embedding"),
               ("embeddings.token_embedding.weight", "token_embedding.weight"), ("final_layer_norm", "ln_final"),
               ("encoder.layers.", "transformer.resblocks."), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
               (".fc1.", ".c_fc."), (".fc2.", ".c_proj."), (".self_attn.", ".attn.")]
    out, qkv = {}, {}
    for key, value in text_encoder.state_dict().items():
        if key.endswith("position_ids"):
            continue
        for new, old in renames:
            key = key.replace(new, old)
        projection = re.match(r"(.*\.attn)\.([qkv])_proj\.(weight|bias)$", key)
        if projection:  # q, k and v are one in_proj matrix in OpenCLIP
            qkv.setdefault((projection[1], projection[3]), {})[projection[2]] = value
        else:
            out["cond_stage_model.model." + key] = value
    for (block, kind), parts in qkv.items():
        out[f"cond_stage_model.model.{block}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def test_a_single_file_sd2_checkpoint_with_an_openclip_text_encoder_opens_as_the_same_model(sd_folders, tmp_path):
    """SD 2.x single files keep their text encoder in OpenCLIP's layout; with the v-prediction folder's configs,
    such a file opens as the folder's own model and samples the same (CFG with a negative prompt, v-prediction)."""
    from safetensors.torch import save_file

    from core.diffusers import load_single_file

    folder = sd_folders["v_prediction"]
    pipe = reference(diffusers.StableDiffusionPipeline, folder)
    weights = {k: v for k, v in ldm_layout(pipe).items() if not k.startswith("cond_stage_model.")}
    weights.update(openclip_layout(pipe.text_encoder))
    (tmp_path / "models").mkdir()
    checkpoint = tmp_path / "models" / "tiny-sd2.safetensors"
    save_file({k: v.contiguous() for k, v in weights.items()}, checkpoint)
    configs = tmp_path / "configs"
    shutil.copytree(folder, configs, ignore=shutil.ignore_patterns("*.safetensors", "vocab.json", "merges.txt"))
    shutil.copytree(folder / "tokenizer", tmp_path / "models" / "tokenizer")
    bundle = load_single_file(checkpoint, "cpu", config=configs)
    request = sd_request("ddim", 4)
    assert request.guidance.kind == "cfg" and request.negative_prompt
    torch.testing.assert_close(final_sample(request, bundle).x, final_sample(request, load_model(folder, "cpu")).x,
                               rtol=0, atol=1e-6)


def test_single_file_families_are_told_from_the_weights(tmp_path):
    from core.diffusers.single_file import CONFIGS, checkpoint_family

    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    path = tmp_path / "model.safetensors"
    assert checkpoint_family(path, {key: (320, 768)})[0] == "sd-v1"
    assert checkpoint_family(path, {key: (320, 1024)})[0] == "sd-v2"  # assumed v-prediction, as diffusers does
    path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert checkpoint_family(path, {key: (320, 1024)})[0] == "sd-v2"
    path.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert checkpoint_family(path, {key: (320, 1024)})[0] == "sd-v2-base"
    with pytest.raises(ValueError, match="SDXL"):
        checkpoint_family(path, {key: (320, 2048), "conditioner.embedders.0.transformer.x": (1,)})
    with pytest.raises(ValueError, match="inpainting"):
        checkpoint_family(path, {key: (320, 768), "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)})
    for name in ("sd-v1", "sd-v2", "sd-v2-base"):  # the shipped configs are what diffusers builds from
        for part in ("unet", "vae", "text_encoder"):
            assert json.loads((CONFIGS / name / part / "config.json").read_text())
    assert json.loads((CONFIGS / "sd-v2" / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == \
        "v_prediction"


def test_the_open_dialogs_plan_states_schedule_size_and_memory_before_loading(sd_folders, dit_folder, tmp_path):
    from core.model_plan import plan_open

    plan = plan_open(sd_folders["v_prediction"], precision="fp16")
    assert plan.ok, plan.error
    rows = {s.name: s.value for s in plan.settings}
    assert rows["pipeline"] == "StableDiffusionPipeline (Stable Diffusion)"
    assert rows["schedule"].startswith("scaled_linear β 0.00085–0.012 over 1000 steps, leading spacing, steps offset 1")
    assert rows["schedule"].endswith("v-prediction") and rows["image size"].startswith("16×16")
    assert rows["default CFG"] == "γ = 7.5 (w = 6.5)" and "GB" in rows["memory"] and "fp16" in rows["memory"]
    assert {s.name: s.value for s in plan_open(dit_folder).settings}["default CFG"] == "γ = 4 (w = 3)"
    broken = tmp_path / "broken"
    shutil.copytree(sd_folders["epsilon"], broken)
    shutil.rmtree(broken / "unet")
    assert "'unet' component (UNet2DConditionModel) is missing" in plan_open(broken).error


# --- previews ------------------------------------------------------------------------------------------------

class LinearVAE(torch.nn.Module):
    """A VAE whose latent at each 4×4 block is exactly A·(mean colour) + c, so the best linear preview is known."""

    def __init__(self):
        super().__init__()
        rows = [[0.8, -0.3, 0.1], [0.2, 0.9, -0.4], [-0.5, 0.1, 0.7], [0.3, 0.3, 0.3]]
        self.a = torch.nn.Parameter(torch.tensor(rows))
        self.c = torch.tensor([0.1, -0.2, 0.05, 0.0])

    def encode(self, images):
        blocks = torch.nn.functional.avg_pool2d(images, 4)
        mean = torch.einsum("kc,bchw->bkhw", self.a, blocks) + self.c[:, None, None]
        return type("Out", (), {"latent_dist": type("Dist", (), {"mean": mean})})


def test_the_latent_preview_is_the_least_squares_linear_map_of_the_vae():
    from core.diffusers.preview import fit_latent_rgb

    vae = LinearVAE()
    fit = fit_latent_rgb(vae, 4, scaling_factor=0.5)
    assert fit.r2 > 0.9999
    colours = torch.rand(2, 3, 3, 5) * 1.6 - 0.8
    latents = (torch.einsum("kc,bchw->bkhw", vae.a.detach(), colours) + vae.c[:, None, None]) * 0.5
    torch.testing.assert_close(fit.apply(latents), colours, atol=1e-4, rtol=0)


def test_the_plan_of_a_single_file_names_its_family_configs_and_tokenizer(tmp_path, sd_folders):
    from safetensors.torch import save_file

    from core.model_plan import DIFFUSERS, plan_open

    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    path = tmp_path / "sd2.safetensors"
    save_file({key: torch.zeros(2, 1024)}, path)
    plan = plan_open(path)
    assert plan.family == DIFFUSERS and "carries no tokenizer" in plan.error
    shutil.copytree(sd_folders["epsilon"] / "tokenizer", tmp_path / "tokenizer")
    plan = plan_open(path)
    assert plan.ok, plan.error
    rows = {s.name: s for s in plan.settings}
    assert rows["model"].value.startswith("SD 2.x, assumed the 768-pixel v-prediction model")
    assert "ε model" in rows["model"].warning and rows["configs"].value.endswith("sd-v2")
    assert rows["tokenizer"].value == str(tmp_path / "tokenizer") and rows["image size"].value.startswith("768×768")
    assert rows["schedule"].value.endswith("v-prediction") and rows["default CFG"].value == "γ = 7.5 (w = 6.5)"
