import json

import pytest
import torch

from dream3d.diffusion import coefficients
from dream3d.guidance import SDS
from dream3d.guidance.fake_scores import TeacherCopy
from dream3d.teachers.base import Teacher
from dream3d.teachers.stable_diffusion import (
    LatentEps,
    StableDiffusionTeacher,
    cached_models,
    locate,
)


def test_a_cached_hub_model_is_found_and_loads_offline(hub_cache):
    assert cached_models() == ["tiny/sd"]
    assert locate("tiny/sd") == hub_cache
    teacher = StableDiffusionTeacher.load("tiny/sd")
    assert isinstance(teacher, Teacher) and teacher.image_size == 32
    cond = teacher.encode_prompt(["a red chair, side view", ""])
    assert cond.shape == (2, 32, 16) and set(teacher._prompts) == {"a red chair, side view", ""}
    z = teacher.encode_images(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert z.shape == (2, 4, 8, 8)
    assert teacher.eps(z, torch.tensor([10, 900]), cond).shape == (2, 4, 8, 8)


def test_a_model_not_on_this_machine_is_one_clear_error(hub_cache, tmp_path):
    with pytest.raises(ValueError, match="'nobody/no-such-model' is not on this machine"):
        locate("nobody/no-such-model")
    with pytest.raises(ValueError, match="not a diffusers pipeline folder"):
        locate(str(tmp_path))


def test_v_prediction_is_turned_into_eps(tiny_sd):
    teacher = StableDiffusionTeacher.load(str(tiny_sd))
    unet, abar = teacher.denoiser.unet, teacher.alphas_cumprod
    v_model = LatentEps(unet, abar, "v_prediction")
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([5, 400, 990])
    cond = teacher.encode_prompt(["a cube"] * 3)
    with torch.no_grad():
        v = unet(x, t, encoder_hidden_states=cond).sample
        a, s = coefficients(abar, t, x)
        assert torch.allclose(v_model.eps(x, t, cond), a * v + s * x, atol=1e-6)


def test_the_gradient_on_the_latents_reaches_the_renders_through_the_vae(tiny_sd):
    """d loss / d rgb = (d z / d rgb)^T g / B, with g the SDS gradient on the latents z."""
    teacher = StableDiffusionTeacher.load(str(tiny_sd))
    sds = SDS(teacher)
    rgb = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    cond = teacher.encode_prompt(["a red cube, front view", "a red cube, side view"])
    loss, _ = sds.loss(sds.to_teacher(rgb), cond, generator=torch.Generator().manual_seed(1))
    loss.backward()
    z = teacher.encode_images(rgb)
    t, eps = sds.draw(z, 0.0, torch.Generator().manual_seed(1))
    g, _ = sds.grad(z.detach(), t, eps, cond)
    (expected,) = torch.autograd.grad(z, rgb, g / 2)
    assert rgb.grad.abs().sum() > 0
    assert torch.allclose(rgb.grad, expected, atol=1e-6)
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen


def test_the_ikl_fake_score_copies_the_unet_alone(tiny_sd):
    """IKL's "teacher" fake score is a copy of the UNet (no VAE, no text encoder) that starts
    with the teacher's weights and outputs, then trains while the teacher's UNet stays put."""
    from dream3d.guidance import make_guidance

    teacher = StableDiffusionTeacher.load(str(tiny_sd))
    ikl = make_guidance("ikl", teacher, fake="teacher", fake_lr=1e-2)
    unet = teacher.denoiser.state_dict()
    assert isinstance(ikl.fake, TeacherCopy)
    assert ikl.fake.state_dict().keys() == {f"net.{k}" for k in unet}
    assert all(torch.equal(ikl.fake.net.state_dict()[k], v) for k, v in unet.items())
    frozen = {k: v.clone() for k, v in unet.items()}
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # latents
    t = torch.tensor([10, 900])
    cond = teacher.encode_prompt(["a red cube, front view", "a red cube, side view"])
    with torch.no_grad():
        assert torch.equal(ikl.fake.eps(z, t, cond), teacher.eps(z, t, cond))
    ikl.update_fake(z, cond, 0.0, torch.Generator().manual_seed(1))
    with torch.no_grad():
        moved = (ikl.fake.eps(z, t, cond) - teacher.eps(z, t, cond)).abs().max().item()
    assert moved > 1e-3  # one Adam step of lr 1e-2 on the copy
    assert all(torch.equal(teacher.denoiser.state_dict()[k], v) for k, v in frozen.items())
    assert all(p.grad is None for p in teacher.parameters())


def test_compare_with_the_hub_model_writes_both_runs(hub_cache, tmp_path):
    from dream3d.cli.main import main

    preset = tmp_path / "fast.yaml"
    preset.write_text(json.dumps({
        "train": {"steps": 4}, "nerf": {"render": {"samples": 16, "shading": {"warmup": 2}}},
        "outputs": {"mesh": {"resolution": 32}, "video_frames": 4, "video_size": 32,
                    "video_samples": 8, "views_size": 32, "views_samples": 16},
    }))  # fmt: skip
    args = ["compare", "--prompt", "a red cube", "--teacher", "sd", "--model", "tiny/sd"]
    assert main(args + ["--preset", str(preset), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    truths = {}
    for guidance in ("sds", "ikl"):
        metrics = json.loads((tmp_path / "out" / f"{guidance}-0" / "metrics.json").read_text())
        assert metrics["teacher"] == "sd" and metrics["steps"] == 4
        truths[guidance] = metrics["truth"]
        # the untrained NeRF of seed 0 scores 0.4267 on the held-out views (measured); 4 steps
        # of a random teacher move it a little (SDS 0.4216, IKL 0.4246), and only a little
        moved = abs(metrics["truth"]["silhouette_iou"] - 0.4267)
        assert 0 < moved < 0.02, "trained: the NeRF moved off the blob, a little"
    assert truths["sds"] != truths["ikl"]  # two guidances, two NeRFs


def test_ikl_trains_image_particles_encoding_each_step_once(tiny_sd):
    """The loop encodes a step's renders once; the fake score and the loss share the latents."""
    from dream3d.guidance import make_guidance
    from dream3d.train import TrainConfig, train
    from generators.particles import Particles

    teacher = StableDiffusionTeacher.load(str(tiny_sd))
    calls = []
    encode = teacher.encode_images
    teacher.encode_images = lambda x: calls.append(x.shape) or encode(x)
    guidance = make_guidance("ikl", teacher, fake="teacher", fake_lr=1e-4)
    images = Particles.gaussian(2, (3, 32, 32), std=0.5)
    before = images.x.detach().clone()
    cond = teacher.encode_prompt(["a red cube, front view"] * 2)
    config = TrainConfig(steps=3, batch=2, lr=1e-2, log_every=1, progress=False)
    history = train(images, guidance, config, cond_fn=lambda sample: cond)
    assert calls == [(2, 3, 32, 32)] * 3
    assert all("fake_loss" in row for row in history)
    assert (images.x.detach() - before).abs().max() > 1e-3  # the gradient reached the pixels
