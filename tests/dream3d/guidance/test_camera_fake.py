"""The camera-conditioned fake score (ProlificDreamer's VSD): IKLConfig.fake_camera."""

import math
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from dream3d.cameras import POSE_DIM, Cameras, cameras_from_pose, pose_features
from dream3d.cli.main import SIDE_FLAGS, _resolve, build_parser
from dream3d.config import merge
from dream3d.guidance import SDS, GuidanceConfig, IKLConfig, build_guidance, make_guidance
from dream3d.pipelines.compare import sides
from dream3d.pipelines.text_to_3d import build, resolve
from dream3d.teachers.gmm import gmm_preset
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from dream3d.train import train

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fast_run import FAST_RUN  # noqa: E402

LR = 1e-3  # the fake's Adam lr here: its first step moves every weight by about LR


def _teacher():
    torch.manual_seed(0)
    config = TinyConfig(size=8, block_out_channels=(8, 16), head_dim=8, cross_attention_dim=16)
    return TinyTeacher(config, encoder=lambda prompts: torch.randn(len(prompts), 16))


def _ikl(teacher, camera: bool, **options):
    torch.manual_seed(1)
    return make_guidance("ikl", teacher, fake="teacher", fake_camera=camera, fake_lr=LR, **options)


def _batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    pose = torch.randn(n, POSE_DIM, generator=g)
    return x0, pose, torch.randn(n, 1, 16, generator=g)


def test_at_init_the_camera_fake_is_the_teacher_copy_exactly():
    teacher = _teacher()
    on, off = _ikl(teacher, True), _ikl(teacher, False)
    x_t, pose, cond = _batch(4)
    t = torch.tensor([10, 300, 600, 990])
    with torch.no_grad():
        e_on = on.fake.eps(x_t, t, cond, pose=pose)
        e_off, e_q = off.fake.eps(x_t, t, cond), teacher.eps(x_t, t, cond)
    assert e_on.abs().mean() > 0.1 and torch.equal(e_on, e_off) and torch.equal(e_on, e_q)


def test_after_a_step_the_camera_fake_reads_the_camera_and_the_plain_one_does_not():
    teacher = _teacher()
    x0, pose, cond = _batch()
    same_x = x0[:1].expand(2, -1, -1, -1)  # one x_t, two cameras
    t = torch.tensor([500, 500])
    for camera in (True, False):
        ikl = _ikl(teacher, camera, share_draw=False)
        ikl.update_fake(x0, cond, 0.0, torch.Generator().manual_seed(0), pose=pose)
        with torch.no_grad():
            e = ikl.eps_fake(same_x, t, cond[:1].expand(2, -1, -1), None, None, pose=pose)
        if camera:  # one Adam step moves the last layer by ~LR: 2.6e-5 here
            assert (e[0] - e[1]).abs().max() > 1e-6
        else:
            assert torch.equal(e[0], e[1])


def test_gradient_reaches_the_last_layer_first_then_the_first():
    """With the last layer at zero, d loss / d first layer = 0 at step 1; Adam's first step
    moves each last-layer bias by LR (m / sqrt(v) = sign of its gradient); step 2 reaches all."""
    ikl = _ikl(_teacher(), True, share_draw=False)
    first, last = ikl.fake.camera.net[0], ikl.fake.camera.net[-1]
    x0, pose, cond = _batch()
    rng = torch.Generator().manual_seed(0)
    ikl.update_fake(x0, cond, 0.0, rng, pose=pose)
    assert torch.equal(first.weight.grad, torch.zeros_like(first.weight))
    assert last.weight.grad.abs().max() > 0 and last.bias.grad.abs().min() > 1e-6
    assert torch.allclose(last.bias.abs(), torch.full_like(last.bias, LR), rtol=1e-2)
    ikl.update_fake(x0, cond, 0.0, rng, pose=pose)
    assert first.weight.grad.abs().max() > 0


def test_the_camera_mlp_is_in_the_fake_state_dict_and_optimizer():
    ikl = _ikl(_teacher(), True)
    camera = dict(ikl.fake.camera.named_parameters(prefix="camera"))
    assert set(camera) == {f"camera.net.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    assert set(camera) <= set(ikl.fake.state_dict())
    in_opt = {id(p) for group in ikl.opt.param_groups for p in group["params"]}
    assert {id(p) for p in camera.values()} <= in_opt
    width = ikl.fake.net.unet.time_embedding.linear_2.out_features  # 4 x 8 channels
    assert ikl.fake.camera.net[-1].weight.shape == (width, width) == (32, 32)


def test_the_unet_fake_from_scratch_reads_the_camera_too():
    ikl = make_guidance(
        "ikl", _teacher(), fake="unet", fake_size=8, fake_camera=True, fake_warmup=0
    )
    x0, pose, cond = _batch()
    ikl.update_fake(x0, cond, 0.0, torch.Generator().manual_seed(0), pose=pose)
    with torch.no_grad():
        e = ikl.fake.eps(x0[:1].expand(2, -1, -1, -1), torch.tensor([500, 500]), pose=pose)
    assert (e[0] - e[1]).abs().max() > 0
    # it ignores the caption, so no weight reads one (a caption projection would be trained
    # on nothing and carried in every checkpoint)
    names = [name for name, _ in ikl.fake.named_parameters()]
    assert names and not any("class_embedding" in name for name in names)


def test_pose_features_by_hand():
    cams = Cameras(
        torch.tensor([90.0, 0.0, -180.0]), torch.tensor([0.0, 90.0, 30.0]),
        torch.tensor([2.8, 3.0, 2.6]), 40.0,
    )  # fmt: skip
    expected = torch.tensor(
        [
            [0.0, 1.0, 1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 1.0, 1.0],
            [-1.0, 0.0, math.sqrt(3) / 2, 0.5, -1.0],
        ]
    )  # radius (2.6, 3.0): 2.8 is the middle, 3.0 the top, 2.6 the bottom
    assert torch.allclose(pose_features(cams), expected, atol=1e-6)
    far = Cameras(torch.zeros(2), torch.zeros(2), torch.tensor([3.4, 2.2]), 40.0)
    assert torch.allclose(pose_features(far)[:, 4], torch.tensor([3.0, -3.0]))  # absolute
    back = cameras_from_pose(pose_features(cams))  # the inverse: the same cameras
    assert torch.allclose(back.azimuth, torch.tensor([90.0, 0.0, 180.0]), atol=1e-4)
    assert torch.allclose(back.elevation, cams.elevation, atol=1e-4)
    assert torch.allclose(back.radius, cams.radius, atol=1e-6)


def test_bad_input_is_one_clear_error():
    teacher = _teacher()
    with pytest.raises(ValueError, match="fake_camera needs a UNet fake score .* not 'dirac'"):
        make_guidance("ikl", teacher, fake="dirac", fake_camera=True)
    with pytest.raises(ValueError, match="not 'mlp'"):  # a mixture teacher's auto fake
        make_guidance("ikl", gmm_preset("ring8"), dim=2, fake_camera=True)
    ikl = _ikl(teacher, True)
    x0, pose, cond = _batch()
    with pytest.raises(ValueError, match="the samples have no pose"):
        ikl.update_fake(x0, cond)
    with pytest.raises(ValueError, match=r"pose must be \(2, 5\) for this batch, got \(2, 4\)"):
        ikl.update_fake(x0, cond, pose=pose[:, :4])


def test_sds_ignores_the_pose_and_the_option_reaches_only_ikl():
    teacher = _teacher()
    x0, pose, cond = _batch()
    sds = SDS(teacher)
    t, eps = sds.draw(x0, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(sds.grad(x0, t, eps, cond)[0], sds.grad(x0, t, eps, cond, pose=pose)[0])
    args = build_parser().parse_args(
        ["compare", "--prompt", "a chair", "--set", "guidance.fake_camera=true"]
    )
    both = sides(_resolve(args, args.prompt, skip=SIDE_FLAGS)[1]["guidance"])
    assert both == sides({"fake_camera": True})
    assert both["ikl"] == IKLConfig(fake_camera=True) and both["sds"] == GuidanceConfig()
    ikl, sds = (build_guidance(both[name], teacher) for name in ("ikl", "sds"))
    assert ikl.fake.camera is not None and type(sds) is SDS


def _nerf_run(tmp_path, camera=None, steps=6, on_log=None, resume=False):
    over = {"train": {"steps": steps, "log_every": 1, "save_every": 0, "progress": False}}
    if camera is not None:
        over["guidance"] = {"fake_camera": camera}
    config = resolve("a chair", overrides=merge(FAST_RUN, over))
    _, _, generator, guidance, cond_fn = build(config)
    path = tmp_path / "checkpoint.pt"
    rows = train(generator, guidance, config.train, cond_fn, on_log, checkpoint=path, resume=resume)
    return [{k: v for k, v in r.items() if k != "time"} for r in rows], guidance


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory):
    return _nerf_run(tmp_path_factory.mktemp("camera"), camera=True)


def test_nerf_runs_without_the_camera_are_unchanged(tmp_path, camera_run):
    default, _ = _nerf_run(tmp_path / "default")
    off, _ = _nerf_run(tmp_path / "off", camera=False)
    assert off == default and len(off) == 6
    on, _ = camera_run
    # step 0's fake-score loss is the same (its camera rows start at zero: the fake is the
    # teacher's copy until its first update); after that update it reads the views
    assert on[0]["fake_loss"] == default[0]["fake_loss"]
    assert on[0]["loss"] != default[0]["loss"]  # g is taken after the update (no share_draw)
    assert all(a["fake_loss"] != b["fake_loss"] for a, b in zip(on[1:], default[1:]))


def test_a_camera_run_resumes_with_its_camera_mlp(tmp_path, camera_run):
    whole, guidance = camera_run

    def ctrl_c(step, row):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # DeferredInterrupt ends the step, then saves
        return row

    with pytest.raises(KeyboardInterrupt):
        _nerf_run(tmp_path, camera=True, on_log=ctrl_c)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and "camera.net.2.weight" in state["guidance"]["fake"]
    resumed, again = _nerf_run(tmp_path, camera=True, resume=True)
    assert resumed == whole
    saved = guidance.fake.camera.state_dict()
    assert saved["net.2.weight"].abs().max() > 0  # trained away from its zero init
    for key, value in again.fake.camera.state_dict().items():
        assert torch.equal(value, saved[key])


def test_a_latent_teachers_copy_reads_the_camera_from_the_same_start(tiny_sd):
    from dream3d.teachers.stable_diffusion import StableDiffusionTeacher

    teacher = StableDiffusionTeacher.load(str(tiny_sd))
    ikl = make_guidance("ikl", teacher, fake="teacher", fake_camera=True)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t, cond = torch.tensor([100, 800]), teacher.encode_prompt(["a chair", "a mug"])
    pose = torch.randn(2, POSE_DIM)
    with torch.no_grad():
        assert torch.equal(ikl.fake.eps(z, t, cond, pose=pose), teacher.eps(z, t, cond))
    assert ikl.fake.camera.net[-1].weight.shape == (32, 32)  # SD's width: 4 x 8 channels
