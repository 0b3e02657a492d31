"""The Qt-free session: requests built from settings, what applies to which model, round trips."""
from __future__ import annotations

import pytest

from core import Guidance, SamplingRequest
from desktop_app.session import ModelCaps, Session, Settings

GMM = ModelCaps("toy-gmm", (2,), 8, tuple(f"component {k}" for k in range(8)), True, True)
BARE = ModelCaps("bare", (1, 8, 8), 3, ("a", "b", "c"), null_label=False, has_classifier=False)
UNCOND = ModelCaps("uncond", (3, 8, 8))


def session_with(caps: ModelCaps, **changes) -> Session:
    s = Session()
    s.set_caps(caps)
    s.update(**changes)
    return s


def test_request_reflects_every_setting():
    s = session_with(GMM, sampler="ddim", steps="ddim25", eta=0.3, seed=7, batch_points=321, clip="none",
                     guidance="both", class_index=5, scale=2.5, weight=1.5, window_on=True,
                     window_start=0.25, window_end=0.75)
    assert s.request() == SamplingRequest(
        model="toy-gmm", sampler="ddim", steps="ddim25", eta=0.3, seed=7, batch=321, clip="none", label=5,
        guidance=Guidance(kind="both", scale=2.5, weight=1.5, window=(0.25, 0.75)))


def test_ddpm_ignores_eta_and_window_needs_guidance():
    s = session_with(GMM, sampler="ddpm", eta=0.7, window_on=True, window_start=0.5)
    req = s.request()
    assert req.eta == 0.0 and req.guidance.window == (0.0, 1.0)
    assert s.availability()["eta"] is not None and "DDIM" in s.availability()["eta"]


def test_batch_is_kept_per_kind_of_model():
    s = session_with(GMM, batch_points=2000, batch_images=9)
    assert s.request().batch == 2000
    s.set_caps(UNCOND)
    assert s.request().batch == 9 and s.request().label is None
    s.set_batch(4)
    assert s.settings.batch_images == 4 and s.settings.batch_points == 2000


def test_each_model_gets_its_own_batch_back():
    scurve = ModelCaps("toy-scurve", (2,), 4, null_label=True)
    s = session_with(GMM, batch_points=1000)
    s.set_caps(scurve)  # first time: the last 2-D batch
    assert s.batch == 1000
    s.set_batch(16)
    s.set_caps(GMM)
    assert s.batch == 1000  # was 16: the 2-D batch was one setting for every 2-D model
    s.set_caps(UNCOND)
    s.set_batch(4)
    s.set_caps(scurve)
    assert s.batch == 16
    s.set_caps(UNCOND)
    assert s.batch == 4
    stored = Settings.from_dict(s.to_dict())
    assert stored.batches == {"toy-gmm": 1000, "toy-scurve": 16, "uncond": 4}
    settings, notes = Settings.parse({"batches": {"toy-gmm": 10**9, "ok": 5, "bad": "x"}})
    assert settings.batches == {"ok": 5} and len(notes) == 2


def test_guidance_that_does_not_apply_is_refused_with_reasons():
    s = session_with(BARE)
    reasons = s.availability()
    assert reasons["guidance:none"] is None
    assert "classifier" in reasons["guidance:classifier"]
    assert "null label" in reasons["guidance:cfg"]
    assert reasons["guidance:both"]
    s.update(guidance="cfg")
    assert s.settings.guidance == "none"  # coerced back: the model cannot do CFG
    assert "unconditional" in session_with(UNCOND).availability()["class"]


def test_switching_model_drops_guidance_it_cannot_do():
    s = session_with(GMM, guidance="cfg", class_index=7)
    s.set_caps(BARE)
    assert s.settings.guidance == "none" and s.settings.class_index == 0
    assert s.settings.model == "bare"


def test_half_precision_only_on_cuda():
    s = Session(Settings(device="cuda", precision="fp16"))
    s.set_caps(GMM)
    assert s.settings.precision == "fp16"  # devices not known yet: a saved choice is kept
    s.set_devices(["cpu"])
    assert (s.settings.device, s.settings.precision) == ("auto", "fp32")
    assert "CUDA" in s.availability()["precision:fp16"]
    s.update(precision="bf16")
    assert s.settings.precision == "fp32"
    s.set_devices(["cuda", "cpu"])
    s.update(precision="fp16")
    assert s.settings.precision == "fp16" and s.availability()["precision:fp16"] is None
    s.update(device="cpu")
    assert s.settings.precision == "fp32"
    assert s.availability()["device:mps"] is not None and s.availability()["device:cuda"] is None


def test_apply_request_round_trips():
    req = SamplingRequest(model="toy-gmm", sampler="ddpm", steps="250", seed=11, batch=64, label=3, clip="clip",
                          guidance=Guidance(kind="classifier", scale=4.0, weight=0.5, window=(0.0, 0.4)))
    s = session_with(GMM)
    s.apply_request(req, "toy-gmm")
    assert s.request() == req
    s.apply_request(req.replace(guidance=Guidance(kind="cfg", weight=3.0)))
    assert s.request().guidance == Guidance(kind="cfg", weight=3.0)


def test_bad_settings_give_a_readable_error():
    s = session_with(GMM, steps="fifty")
    with pytest.raises(ValueError, match="steps"):
        s.request()
    assert "steps" in s.validation_error()
    with pytest.raises(ValueError, match="No model"):
        Session().request()


def test_settings_from_dict_drops_what_it_cannot_use():
    restored = Settings.from_dict({"seed": "12", "sampler": "euler", "eta": "nan", "scale": 3, "junk": 1,
                                   "batch_points": "many"})
    assert restored == Settings(seed=12, scale=3.0)
    assert Settings.from_dict(Settings(weight=4.0, guidance="cfg").to_dict()) == Settings(weight=4.0, guidance="cfg")


def test_listeners_hear_changes_once():
    s = session_with(GMM)
    heard = []
    s.subscribe(heard.append)
    s.update(seed=5)
    s.update(seed=5)  # no change, no notification
    assert heard == [s]


def test_a_family_default_guidance_strength_applies_when_switching_to_that_model():
    sd = ModelCaps("tiny-sd", (4, 8, 8), 1, null_label=True, default_gamma=7.5)
    s = session_with(GMM, guidance="none", weight=2.0)
    s.set_caps(sd)
    assert (s.settings.guidance, s.settings.weight) == ("cfg", 6.5)
    s.update(weight=3.0)
    s.set_caps(sd)  # the same model again (reload, restart): the user's choice stays
    assert s.settings.weight == 3.0
    s.set_caps(GMM)  # a family without a default keeps the current strength
    assert (s.settings.guidance, s.settings.weight) == ("cfg", 3.0)


SD = ModelCaps("tiny-sd", (4, 8, 8), takes_prompt=True, size_choice=True, image_size=(64, 64), is_latent=True,
               default_gamma=7.5)


def test_prompt_models_carry_prompt_and_size_into_the_request_and_other_models_do_not():
    s = session_with(GMM, prompt="a red fox", negative_prompt="blurry")
    assert s.request().prompt is None and s.request().width is None
    assert "not guided by text" in s.availability()["prompt"] and s.availability()["size"]
    s.set_caps(SD)
    assert (s.settings.width, s.settings.height) == (64, 64)  # a newly chosen model starts at its own size
    s.update(width=96, height=48)
    req = s.request()
    assert (req.prompt, req.negative_prompt, req.width, req.height, req.label) == ("a red fox", "blurry", 96, 48, None)
    assert req.guidance.kind == "cfg" and req.guidance.weight == 6.5
    reasons = s.availability()
    assert reasons["prompt"] is None and reasons["size"] is None and reasons["guidance:cfg"] is None
    assert "guided by the prompt" in reasons["class"] and reasons["guidance:classifier"]
    fixed = ModelCaps("tiny-dit", (4, 4, 4), 1000, null_label=True, image_size=(32, 32), is_latent=True)
    s.set_caps(fixed)
    assert s.availability()["size"] == "tiny-dit makes 32×32 images only." and s.request().width is None


def test_image_sides_must_be_multiples_of_eight():
    s = session_with(SD, width=128)
    s.update(width=100)
    assert s.settings.width == 128
    assert Settings.from_dict({"width": 99, "height": 5000}) == Settings()
    s.apply_request(SamplingRequest(model="tiny-sd", prompt="owl", negative_prompt="", width=72, height=80))
    assert (s.settings.prompt, s.settings.width, s.settings.height) == ("owl", 72, 80)
    assert s.request().prompt == "owl"
