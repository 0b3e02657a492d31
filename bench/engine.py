"""Engine overhead on CPU (issue 2's benchmark; prints figures, exits 0).

(a) sampling wall time ÷ the time of the network forwards alone, for a small UNet, 50 DDIM steps
    with classifier-free guidance — the engine's own work (step math, noise, bookkeeping, Step
    records) is the difference;
(b) CFG as one batched forward of 2B ÷ two separate forwards of B, and which way the engine chose (it
    measures the ways once per model, device, batch and thread count: core.guidance._Ways).
Repeats of the two sides alternate and each side keeps its best time, so load from other processes
on the machine disturbs both sides alike; the ratios come from one run.
"""
from __future__ import annotations

import time

import torch

from core import Guidance, ModelBundle, ModelConfig, SamplingRequest, sample
from core.guidance import batching_choice
from core.models import build_network

NETWORK = dict(image_size=32, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=2,
               attention_resolutions=[2], channel_mult=[1, 2, 2], num_classes=11, num_head_channels=32,
               use_scale_shift_norm=True, resblock_updown=True)
BATCH, STEPS, REPEATS = 2, 50, 3


def _best_times(a, b, repeats=REPEATS) -> tuple[float, float]:
    """Best wall time of `a` and of `b`, run alternately `repeats` times each."""
    best_a = best_b = float("inf")
    for _ in range(repeats):
        for fn, is_a in ((a, True), (b, False)):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if is_a:
                best_a = min(best_a, elapsed)
            else:
                best_b = min(best_b, elapsed)
    return best_a, best_b


def main() -> None:
    torch.manual_seed(0)
    config = ModelConfig("unet", (3, 32, 32), network=NETWORK, num_classes=10, null_label=True)
    model = build_network("unet", NETWORK).eval()
    bundle = ModelBundle("bench-unet", config, model)
    params = sum(p.numel() for p in model.parameters())
    request = SamplingRequest("bench-unet", steps=STEPS, batch=BATCH, label=3, guidance=Guidance("cfg", weight=2.0))

    x = torch.randn(2 * BATCH, 3, 32, 32)
    t = torch.full((2 * BATCH,), 500)
    y = torch.cat([torch.full((BATCH,), 3), torch.full((BATCH,), 10)])

    def forwards_alone():
        with torch.no_grad():
            for _ in range(STEPS):
                model(x, t, y)

    def full_sampling():
        for _ in sample(request, bundle):
            pass

    forwards_alone()  # warm-up
    t_forward, t_sample = _best_times(forwards_alone, full_sampling)
    print(f"UNet {params / 1e6:.2f} M parameters, 32x32x3, batch {BATCH} (+{BATCH} unconditional), "
          f"{STEPS} DDIM steps, CFG w=2, {torch.get_num_threads()} threads")
    print(f"(a) forwards alone {t_forward:.3f} s, full sampling {t_sample:.3f} s, "
          f"ratio {t_sample / t_forward:.3f} (target <= 1.05)")

    xb, tb, yb = x[:BATCH], t[:BATCH], y[:BATCH]

    def batched():
        with torch.no_grad():
            for _ in range(10):
                model(x, t, y)

    def separate():
        with torch.no_grad():
            for _ in range(10):
                model(xb, tb, yb)
                model(xb, tb, torch.full((BATCH,), 10))

    batched(), separate()
    t_batched, t_separate = _best_times(batched, separate, 5)
    print(f"(b) CFG one forward of {2 * BATCH}: {t_batched / 10 * 1e3:.1f} ms, two forwards of {BATCH}: "
          f"{t_separate / 10 * 1e3:.1f} ms, ratio {t_batched / t_separate:.3f}; the engine measured once and "
          f"chose {', '.join(sorted(set(batching_choice(bundle).values())))} "
          f"(joint: one forward; split: a forward per pass; cores: slices side by side on the CPU's cores)")


if __name__ == "__main__":
    main()
