"""The LoRA fake score (ProlificDreamer's VSD): adapters on the teacher's own UNet."""

import io
import json

import pytest
import torch
import yaml
from torch import nn

from dream3d.cameras import POSE_DIM
from dream3d.diffusion import alphas_cumprod
from dream3d.guidance import IKL, IKLConfig
from dream3d.guidance.fake_scores import LoRA, LoRAScore, TeacherCopy, fake_memory
from dream3d.teachers.gmm import gmm_preset
from dream3d.teachers.stable_diffusion import LatentEps, StableDiffusionTeacher
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from tests.fast_run import FAST_RUN

PROJECTIONS = (".to_q", ".to_k", ".to_v", ".to_out.0")


@pytest.fixture(scope="module")
def teacher(tiny_sd):
    return StableDiffusionTeacher.load(str(tiny_sd))


def _ikl(teacher, **options) -> IKL:
    return IKL(teacher, IKLConfig(**{"fake": "lora", "fake_lr": 1e-2} | options))


def _batch(teacher, n=3, seed=0):
    """Latents x0, a fixed (t, eps) draw, captions and poses."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, 4, 8, 8, generator=g)
    x_t = torch.randn(n, 4, 8, 8, generator=g)
    t = torch.tensor([20, 500, 950, 300, 700][:n])
    cond = teacher.encode_prompt(["a red cube", "a blue mug", "a chair", "", "a lamp"][:n])
    return x0, x_t, t, cond, torch.randn(n, POSE_DIM, generator=g)


def _hooks(unet: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in unet.modules())


def _fit(ikl, teacher, steps=3, seed=0):
    x0, _, _, cond, pose = _batch(teacher)
    g = torch.Generator().manual_seed(seed)
    return [ikl.update_fake(x0, cond, generator=g, pose=pose)["fake_loss"] for _ in range(steps)]


def test_an_adapted_linear_adds_alpha_over_r_times_b_a_x():
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
        layer.bias.copy_(torch.tensor([0.5, -0.5]))
    lora = LoRA(layer, rank=1, alpha=2.0, generator=torch.Generator().manual_seed(0))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    handle = layer.register_forward_hook(lora.hook)
    assert torch.equal(layer(x), torch.tensor([[1.5, 1.5]]))  # B = 0: W x + b
    with torch.no_grad():
        lora.down.weight.copy_(torch.tensor([[1.0, 1.0, 1.0]]))  # A x = 6
        lora.up.weight.copy_(torch.tensor([[1.0], [-2.0]]))  # B A x = (6, -12)
    assert torch.equal(layer(x), torch.tensor([[1.5 + 12, 1.5 - 24]]))  # alpha / r = 2
    handle.remove()
    assert torch.equal(layer(x), torch.tensor([[1.5, 1.5]]))


@pytest.mark.parametrize(
    "options, words",
    [
        ({"fake_rank": 0}, "fake rank must be >= 1, got 0"),
        ({"fake_alpha": 0.0}, "fake alpha must be a finite number > 0, got 0.0"),
        ({"fake_alpha": float("inf")}, "fake alpha must be a finite number > 0, got inf"),
    ],
)
def test_bad_lora_settings_are_one_clear_error(options, words):
    with pytest.raises(ValueError, match=words):
        IKLConfig(**options)


def test_the_lora_fake_starts_as_the_teacher_and_building_it_leaves_the_teacher_alone(teacher):
    _, x_t, t, cond, _ = _batch(teacher)
    with torch.no_grad():
        before = teacher.eps(x_t, t, cond)
        ikl = IKL(teacher, IKLConfig(fake="lora"))
        after, fake = teacher.eps(x_t, t, cond), ikl.fake.eps(x_t, t, cond)
    assert isinstance(ikl.fake, LoRAScore) and before.abs().mean() > 0.1
    assert torch.equal(after, before) and torch.equal(fake, before)  # B = 0: exactly the teacher
    assert _hooks(teacher.denoiser.unet) == 0  # the adapters are hooked only while the fake runs
    with pytest.raises(RuntimeError, match="boom"), ikl.fake.applied():
        assert _hooks(teacher.denoiser.unet) == 4 * 2 * 4  # 4 blocks x 2 attentions x q, k, v, out
        raise RuntimeError("boom")
    assert _hooks(teacher.denoiser.unet) == 0  # removed on an exception too


def test_fitting_moves_the_fake_and_not_one_weight_of_the_teacher(teacher):
    _, x_t, t, cond, _ = _batch(teacher)
    unet = teacher.denoiser.unet
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    with torch.no_grad():
        e_q = teacher.eps(x_t, t, cond)
    ikl = _ikl(teacher)
    losses = _fit(ikl, teacher, steps=4)
    with torch.no_grad():
        moved = (ikl.fake.eps(x_t, t, cond) - e_q).abs().max()
        assert torch.equal(teacher.eps(x_t, t, cond), e_q)
    assert all(torch.isfinite(torch.tensor(losses))) and moved > 1e-3
    assert all(lora.up.weight.abs().max() > 0 for lora in ikl.fake.lora.values())  # B trained
    assert unet.state_dict().keys() == weights.keys()  # no layer of the UNet was replaced
    assert all(torch.equal(v, weights[k]) for k, v in unet.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())


def test_renders_reach_a_latent_teacher_through_its_encoder_and_a_pixel_teacher_as_they_are(
    teacher,
):
    rgb = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rgb.requires_grad_(True)
    z = _ikl(teacher).to_teacher(rgb)
    assert z.shape == (2, 4, 8, 8)  # the VAE's latents, 8x smaller
    assert torch.allclose(z, teacher.encode_images(rgb.detach()), atol=1e-6)
    z.square().sum().backward()  # the generator learns through the encoder
    assert rgb.grad.abs().max() > 0
    pixels = IKL(TinyTeacher(TinyConfig(size=8, block_out_channels=(8, 16), head_dim=8)))
    assert pixels.to_teacher(rgb) is rgb


def test_the_fake_holds_the_adapters_and_the_camera_alone(teacher):
    rank = 3
    unet = teacher.denoiser.unet
    # counted here from the UNet's own layers: r (in + out) per adapted Linear
    linears = [m for n, m in unet.named_modules() if n.endswith(PROJECTIONS)]
    expected = sum(rank * (m.in_features + m.out_features) for m in linears)
    # the tiny UNet: 4 transformer blocks (down, mid, 2 up) x 2 attentions x 4 projections, 16 wide
    assert expected == 4 * 2 * 4 * rank * (16 + 16) == 3072
    width = 4 * 8  # the timestep embedding: 4 x the first block's 8 channels
    camera = POSE_DIM * width + width + width * width + width  # CameraEmbedding: 2 Linears

    for camera_on, n in ((False, expected), (True, expected + camera)):
        ikl = _ikl(teacher, fake_rank=rank, fake_camera=camera_on)
        params = list(ikl.fake.parameters())
        assert sum(p.numel() for p in params) == n
        assert all(p.dtype == torch.float32 and p.requires_grad for p in params)
        assert sum(p.numel() for group in ikl.opt.param_groups for p in group["params"]) == n
        assert not any(m is unet for m in ikl.fake.modules())  # the UNet is not a submodule
        keys = ikl.fake.state_dict().keys()
        assert all(k.startswith(("lora.", "camera.")) for k in keys)
        assert sum(k.startswith("lora.") for k in keys) == 2 * len(linears)  # A and B of each


def test_auto_picks_lora_for_stable_diffusion_and_a_copy_for_the_tiny_teacher(teacher):
    from dream3d.pipelines.world import load_tiny

    assert StableDiffusionTeacher.fake_score == "lora"
    assert isinstance(IKL(teacher, IKLConfig(fake="auto")).fake, LoRAScore)
    assert isinstance(IKL(load_tiny(), IKLConfig(fake="auto")).fake, TeacherCopy)
    with pytest.raises(ValueError, match="'lora' needs a teacher with a diffusers UNet"):
        IKL(gmm_preset("ring8"), IKLConfig(fake="lora"), dim=2)


def test_a_lora_of_the_tiny_teacher_starts_as_it_too():
    torch.manual_seed(0)
    config = TinyConfig(size=8, block_out_channels=(8, 16), head_dim=8, cross_attention_dim=16)
    tiny = TinyTeacher(config, encoder=lambda prompts: torch.randn(len(prompts), 16))
    x_t, t, cond = torch.randn(2, 3, 8, 8), torch.tensor([100, 800]), torch.randn(2, 1, 16)
    fake = IKL(tiny, IKLConfig(fake="lora")).fake
    with torch.no_grad():
        assert torch.equal(fake.eps(x_t, t, cond), tiny.eps(x_t, t, cond))


@pytest.mark.parametrize("camera", [False, True])
def test_a_resumed_fake_continues_exactly(teacher, camera):
    _, x_t, t, cond, pose = _batch(teacher)
    first = _ikl(teacher, fake_camera=camera)
    _fit(first, teacher, steps=2)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    again = _ikl(teacher, fake_camera=camera)  # a fresh build: B = 0, and the same A
    again.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(2):  # equal after loading, and after one more step of each
        with torch.no_grad():
            e_first = first.fake.eps(x_t, t, cond, pose=pose)
            assert torch.equal(again.fake.eps(x_t, t, cond, pose=pose), e_first)
        assert (e_first - teacher.eps(x_t, t, cond)).abs().max() > 1e-3
        for ikl in (first, again):
            _fit(ikl, teacher, steps=1, seed=5)


def test_the_camera_lora_reads_the_pose_and_the_teacher_does_not(teacher):
    _, x_t, t, cond, pose = _batch(teacher)
    one_x = x_t[:1].expand(3, -1, -1, -1)  # one x_t, t and caption; three cameras
    one_t, one_cond = t[:1].expand(3), cond[:1].expand(3, -1, -1)
    ikl = _ikl(teacher, fake_camera=True, fake_lr=1e-3)
    with torch.no_grad():
        e_q = teacher.eps(one_x, one_t, one_cond)
        start = ikl.fake.eps(one_x, one_t, one_cond, pose=pose)
    assert torch.equal(start, e_q)  # the camera's last layer starts at 0
    _fit(ikl, teacher, steps=1)
    assert ikl.fake.camera.net[-1].weight.abs().max() > 0
    with torch.no_grad():
        e_g = ikl.fake.eps(one_x, one_t, one_cond, pose=pose)
        assert torch.equal(teacher.eps(one_x, one_t, one_cond), e_q)
    assert (e_g[0] - e_g[1]).abs().max() > 1e-6 and (e_g[1] - e_g[2]).abs().max() > 1e-6
    assert _hooks(teacher.denoiser.unet) == 0  # the camera hook is gone too
    with pytest.raises(ValueError, match="the samples have no pose"):
        ikl.fake.eps(one_x, one_t, one_cond)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_unets_get_float32_adapters(dtype):
    """The adapters' input is cast up and their update back to the layer's dtype; gradients
    reach them in float32 (on a CPU here; CUDA's fp16 kernels are not tested)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    ).to(dtype).requires_grad_(False)  # fmt: skip
    net = LatentEps(unet, alphas_cumprod("scaled_linear", 1000), "epsilon")
    fake = LoRAScore(net, rank=4, camera=True)
    x_t, t, cond = torch.randn(2, 4, 8, 8), torch.tensor([10, 700]), torch.randn(2, 32, 16)
    pose = torch.randn(2, POSE_DIM)
    with torch.no_grad():
        assert torch.equal(fake.eps(x_t, t, cond, pose=pose), net.eps(x_t, t, cond))
    fake.eps(x_t, t, cond, pose=pose).pow(2).mean().backward()
    assert {p.dtype for p in fake.parameters()} == {torch.float32}
    grads = [lora.up.weight.grad for lora in fake.lora.values()]
    assert all(g.dtype == torch.float32 and g.abs().max() > 0 for g in grads)
    assert fake.camera.net[-1].weight.grad.abs().max() > 0


def test_lora_needs_a_fraction_of_the_memory_of_a_copy(teacher):
    unet = teacher.denoiser.unet
    n_unet = sum(p.numel() for p in unet.parameters())
    linears = [m for n, m in unet.named_modules() if n.endswith(PROJECTIONS)]
    n_lora = sum(4 * (m.in_features + m.out_features) for m in linears)
    lora, copy = fake_memory(LoRAScore(teacher)), fake_memory(TeacherCopy(teacher))
    # float32 weights, gradients and Adam's two moments: 16 bytes a trainable weight
    assert lora == {"params": n_lora, "trainable": n_lora, "bytes": 16 * n_lora}
    assert copy == {"params": n_unet, "trainable": n_unet, "bytes": 16 * n_unet}
    assert copy["bytes"] / lora["bytes"] == pytest.approx(n_unet / n_lora) and n_unet > 10 * n_lora


def test_on_stable_diffusion_1_5_the_lora_is_0_8m_weights_against_860m():
    """SD 1.5's UNet built on the meta device (no weights, no download): its 16 transformer
    blocks of width d each adapt 8 Linears: r (d + d) for 6 of them, r (768 + d) for the
    cross-attention keys and values; with r = 4 that is 56 d + 8 x 768 per block."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
    widths = [320] * 5 + [640] * 5 + [1280] * 6  # down 2 + up 3 each, 1280: down 2, mid 1, up 3
    expected = sum(56 * d + 8 * 768 for d in widths)
    lora = fake_memory(LoRAScore(LatentEps(unet, alphas_cumprod(), "epsilon")))
    n_unet = sum(p.numel() for p in unet.parameters())
    assert lora["trainable"] == expected == 797_184 and n_unet == 859_520_964
    assert lora["bytes"] == 16 * expected  # 12.8 MB against a copy's 13.8 GB


def test_dream3d_run_with_stable_diffusion_fits_a_lora_fake(tiny_sd, tmp_path):
    from dream3d.cli.main import main

    preset = tmp_path / "fast.yaml"
    preset.write_text(yaml.safe_dump(FAST_RUN | {"train": {"steps": 3, "save_every": 3}}))
    out = tmp_path / "run"
    args = ["run", "--prompt", "a red cube", "--teacher", "sd", "--model", str(tiny_sd)]
    args += ["--guidance", "ikl", "--steps", "3", "--preset", str(preset), "--out", str(out)]
    assert main(args + ["--set", "guidance.fake_rank=2", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"] == "sd" and metrics["steps"] == 3
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["guidance"]["fake"] == "auto" and config["guidance"]["fake_rank"] == 2
    fake = torch.load(out / "checkpoint.pt", weights_only=True)["guidance"]["fake"]
    assert len(fake) == 2 * 32 and all(k.startswith("lora.") for k in fake)  # A, B of 32 layers
    assert all(fake[k].shape == (2, 16) for k in fake if k.endswith("down.weight"))  # rank 2
    assert max(fake[k].abs().max() for k in fake if k.endswith("up.weight")) > 0  # it was fitted
