"""Our sampling of a Stable Diffusion pipeline against `pipeline(...)` itself (issue 11; prints figures, exits 0).

Both sides run the SAME in-memory pipeline (random weights, the same modules shared by our bundle and the
diffusers StableDiffusionPipeline), from the same x_T, with DDIM, the same steps and CFG (γ = 7.5, one
batched 2B forward on both sides), prompt and negative prompt, and end with the full VAE decode. Ours runs
with previews on, recorded as the app's worker records them (`core.recording.Recorder`): the fast linear
latent→RGB picture of x_t and x̂0 at every step, brought to the CPU as uint8 frames, and the per-step curves. Runs alternate (ours, theirs, …) after one warm-up each, so load
from other processes disturbs both alike; the ratio is ours ÷ theirs from the best time of each, one run.

Presets:
  small  a small random UNet of Stable Diffusion's shape (SD's blocks, narrower): 128×128, 10 steps (CPU goal ≤ 1.10)
  sd15   Stable Diffusion 1.5's exact UNet, VAE and CLIP-L text-encoder shapes, random weights: 512×512,
         30 steps; fp16 on CUDA (GPU goal ≤ 1.05), with seconds per step and peak memory
`--preset auto` (the default) is sd15 on CUDA and small elsewhere. Needs torch, diffusers and transformers.

    python bench/diffusers_speed.py --threads 1          # CPU: small (one thread: steadier on a shared machine)
    python bench/diffusers_speed.py --preset sd15        # CUDA: SD-1.5 shapes, fp16, 30 steps
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import Guidance, SamplingRequest, sample  # noqa: E402
from core.diffusers.files import Weights  # noqa: E402
from core.diffusers.loader import PipelineInfo, build_bundle  # noqa: E402
from core.images import to_uint8  # noqa: E402
from core.recording import Recorder  # noqa: E402

PROMPT, NEGATIVE, GAMMA = "a photo of a cat", "blurry", 7.5
SD_SCHEDULER = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
                    set_alpha_to_one=False, clip_sample=False)
PRESETS = {
    "small": dict(size=128, steps=10, unet=dict(block_out_channels=(32, 64, 128, 128), cross_attention_dim=64,
                                                attention_head_dim=8),
                  vae=(32, 32, 64, 64), text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                    num_attention_heads=2)),
    "sd15": dict(size=512, steps=30, unet=dict(block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                               attention_head_dim=8),
                 vae=(128, 256, 512, 512), text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                     num_attention_heads=12)),
}


def build_pipeline(preset: dict, folder: Path, device: torch.device, dtype: torch.dtype):
    """A random-weight StableDiffusionPipeline of the preset's shapes, built directly on `device`."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                           model_max_length=77)
    torch.manual_seed(0)
    with torch.device(device):
        unet = diffusers.UNet2DConditionModel(
            sample_size=preset["size"] // 8, in_channels=4, out_channels=4, layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, **preset["unet"])
        vae = diffusers.AutoencoderKL(
            block_out_channels=preset["vae"], down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
            sample_size=preset["size"])
        text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
            vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
            **preset["text"]))
    for module in (unet, vae, text_encoder):
        module.to(dtype).eval()
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=diffusers.DDIMScheduler(**SD_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _count(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


@dataclass
class Setup:
    """A random Stable Diffusion pipeline of a preset's shapes and our bundle of the very same modules, with
    the request both sides sample (this bench and bench/latent_previews.py)."""

    name: str
    preset: dict
    steps: int
    device: torch.device
    precision: str
    dtype: torch.dtype
    card: str
    pipe: object
    info: PipelineInfo
    bundle: object
    request: SamplingRequest
    build_seconds: float


def parse_args(description: str, per: str) -> argparse.Namespace:
    """The options both SD benches take; `per` names what --repeats counts ("side", "way")."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", choices=("auto", *PRESETS), default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help=f"measured runs per {per} (after one warm-up)")
    parser.add_argument("--steps", type=int, default=0, help="override the preset's step count")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser.parse_args()


def setup(args: argparse.Namespace) -> Setup:
    """Build the preset's pipeline on the device (sd15 on CUDA, small elsewhere, unless --preset says), fp16
    on CUDA and fp32 elsewhere, and our bundle over its modules."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    name = args.preset if args.preset != "auto" else ("sd15" if device.type == "cuda" else "small")
    preset = PRESETS[name]
    steps = args.steps or preset["steps"]
    precision = "fp16" if device.type == "cuda" else "fp32"
    dtype = torch.float16 if precision == "fp16" else torch.float32
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pipe = build_pipeline(preset, Path(tmp), device, dtype)
        count = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
        info = PipelineInfo(Path(f"random {name}"), "StableDiffusionPipeline", "sd", {},
                            {"all": Weights((), None, count)})
        parts = {"unet": pipe.unet, "vae": pipe.vae, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer}
        bundle = build_bundle(f"random-{name}", info, parts, dict(pipe.scheduler.config), {}, device, precision)
        seconds = time.perf_counter() - start
    size = preset["size"]
    request = SamplingRequest(name, steps=str(steps), seed=0, batch=1, prompt=PROMPT, negative_prompt=NEGATIVE,
                              width=size, height=size, guidance=Guidance("cfg", weight=GAMMA - 1))
    return Setup(name, preset, steps, device, precision, dtype, card, pipe, info, bundle, request, seconds)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "side")
    bench = setup(args)
    name, preset, steps, device, precision, dtype, card = (bench.name, bench.preset, bench.steps, bench.device,
                                                           bench.precision, bench.dtype, bench.card)
    pipe, info, bundle, request = bench.pipe, bench.info, bench.bundle, bench.request
    print(f"{name}: UNet {_count(pipe.unet):.0f} M, VAE {_count(pipe.vae):.0f} M, text encoder "
          f"{_count(pipe.text_encoder):.0f} M parameters; {preset['size']}×{preset['size']}, {steps} DDIM steps, "
          f"CFG γ = {GAMMA}, {precision} on {card}; built in {bench.build_seconds:.1f}s")
    size = preset["size"]
    x_t = next(sample(request, bundle)).x
    state = {}

    def ours() -> None:
        loop = time.perf_counter()
        last = None
        recorder = Recorder.for_bundle(request, bundle)  # previews on, recorded as the app's worker does
        for last in sample(request, bundle):
            recorder.add(last)
        recorder.flush()
        state["loop"] = time.perf_counter() - loop
        state["latents"] = last.x
        to_uint8(bundle.decode(last.x).cpu())

    def theirs(output_type: str = "pt"):
        return pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=steps, guidance_scale=GAMMA,
                    latents=x_t.to(dtype), height=size, width=size, output_type=output_type).images

    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    peaks: dict[str, int] = {}
    loops = []
    for repeat in range(args.repeats + 1):
        for side, fn in (("ours", ours), ("theirs", theirs)):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if repeat:  # the first round warms up
                times[side].append(time.perf_counter() - start)
                if side == "ours":
                    loops.append(state["loop"])
            if device.type == "cuda":
                peaks[side] = max(peaks.get(side, 0), torch.cuda.max_memory_allocated(device))
    best = {side: min(values) for side, values in times.items()}
    reference = theirs("latent").float()
    gap = float((state["latents"] - reference).norm() / reference.norm())
    print(f"  ours   (previews on): best {best['ours']:.3f}s per image of {args.repeats} "
          f"({', '.join(f'{t:.3f}' for t in times['ours'])}); sampling loop {min(loops) / steps * 1000:.1f} ms/step")
    print(f"  pipeline(...)       : best {best['theirs']:.3f}s per image of {args.repeats} "
          f"({', '.join(f'{t:.3f}' for t in times['theirs'])}); {best['theirs'] / steps * 1000:.1f} ms/step "
          "including prompt encoding and decode")
    print(f"  ratio ours/pipeline : {best['ours'] / best['theirs']:.3f}   (goal ≤ "
          f"{'1.05 on GPU' if device.type == 'cuda' else '1.10 on CPU'})")
    print(f"  final latents, ours vs pipeline: {gap:.2e} relative ({precision}; the pipeline steps in {precision}, "
          "we keep x_t in fp32)")
    if peaks:
        print(f"  peak GPU memory: ours {peaks['ours'] / 2**30:.2f} GiB, pipeline {peaks['theirs'] / 2**30:.2f} GiB "
              f"({card}); what the loader says before loading: {info.memory_text(precision)}")


if __name__ == "__main__":
    main()
