"""Teachers told the camera: the tiny camera teacher, the camera oracle, and how guidance and
training hand each sample's camera to them (issue 29)."""

import json
import math

import pytest
import torch
import yaml

from dream3d.cameras import POSE_DIM, CameraConfig, Cameras, pose_features, sample_cameras
from dream3d.guidance import make_guidance
from dream3d.guidance.base import eps_cfg
from dream3d.teachers.base import teacher_eps
from dream3d.teachers.oracle import CameraOracle
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from dream3d.teachers.tiny_train import TeacherTrainConfig, denoising_loss, train_teacher
from tests.dream3d.teachers.test_tiny import SMALL, fake_encoder

CAMERA = TinyConfig(**{**SMALL.__dict__, "camera": True})


def _poses(n, seed=0):
    return pose_features(sample_cameras(n, torch.Generator().manual_seed(seed)))


def _pair(seed=0):
    """A text-only small teacher and a camera one holding the same UNet weights."""
    torch.manual_seed(seed)
    text = TinyTeacher(SMALL, encoder=fake_encoder)
    camera = TinyTeacher(CAMERA, encoder=fake_encoder)
    camera.unet.load_state_dict(text.unet.state_dict())
    return text.eval(), camera.eval()


def test_the_camera_teacher_starts_as_the_text_teacher_and_then_reads_the_camera():
    text, camera = _pair()
    assert camera.reads_camera and not text.reads_camera
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([10, 500, 900])
    cond = text.encode_prompt(["a red chair, side view"] * 3)
    pose = _poses(3)
    with torch.no_grad():
        plain = text.eps(x, t, cond)
        assert torch.equal(camera.eps(x, t, cond, camera=pose), plain)  # zero last layer
        torch.nn.init.normal_(camera.camera.net[-1].weight, std=0.5)
        moved = camera.eps(x, t, cond, camera=pose)
        other = camera.eps(x, t, cond, camera=_poses(3, seed=1))
        no_camera = camera.eps(x, t, cond, camera=torch.zeros(3, POSE_DIM))
        none = camera.eps(x, t, cond)
    assert (moved - plain).abs().max() > 1e-3  # the camera now changes eps ...
    assert (moved - other).abs().max() > 1e-3  # ... and another camera changes it otherwise
    assert torch.equal(no_camera, plain) and torch.equal(none, plain)  # a zero row: no camera
    mixed = torch.cat([pose[:1], torch.zeros(2, POSE_DIM)])  # per sample, not per batch
    with torch.no_grad():
        rows = camera.eps(x, t, cond, camera=mixed)
    assert torch.allclose(rows[0], moved[0], atol=1e-6) and torch.equal(rows[1:], plain[1:])


def test_a_camera_teacher_saves_and_loads_with_its_camera(tmp_path):
    _, camera = _pair()
    torch.nn.init.normal_(camera.camera.net[-1].weight, std=0.5)
    camera.add_captions(["a red chair, side view"])
    camera.save(tmp_path / "t.safetensors")
    back = TinyTeacher.load(tmp_path / "t.safetensors")
    assert back.reads_camera
    x, t, pose = torch.randn(2, 3, 16, 16), torch.tensor([100, 700]), _poses(2)
    cond = camera.encode_prompt(["a red chair, side view"] * 2)
    with torch.no_grad():
        assert torch.equal(back.eps(x, t, cond, camera=pose), camera.eps(x, t, cond, camera=pose))


class _Recorder:
    """A teacher whose eps is x_t + the first pose column; it records every camera it is given."""

    alphas_cumprod = torch.linspace(0.99, 0.01, 10, dtype=torch.float64)

    def __init__(self, reads_camera: bool):
        self.reads_camera = reads_camera
        self.seen = []

    def encode_prompt(self, prompts):
        return torch.tensor([[1.0] if p else [0.0] for p in prompts])

    def eps(self, x_t, t, cond, camera=None):
        self.seen.append(camera)
        extra = 0 if camera is None else camera[:, :1]
        return x_t * cond + extra  # cond 0 (uncond): the camera alone; 1: x_t + camera


def test_guidance_gives_the_camera_to_both_cfg_branches_and_only_to_camera_teachers():
    x, t = torch.full((2, 1), 2.0), torch.tensor([3, 4])
    cond, uncond = torch.ones(2, 1), torch.zeros(2, 1)
    pose = torch.tensor([[0.5, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0]])
    reader = _Recorder(True)
    out = eps_cfg(reader, x, t, cond, uncond, 3.0, camera=pose)
    (seen,) = reader.seen
    assert torch.equal(seen, torch.cat([pose, pose]))  # the text dropped, never the camera
    # e_c = x + p, e_u = p: e_u + 3 (e_c - e_u) = p + 3 x
    assert torch.equal(out, pose[:, :1] + 3 * x)
    deaf = _Recorder(False)
    eps_cfg(deaf, x, t, cond, uncond, 3.0, camera=pose)
    assert deaf.seen == [None]  # a text-only teacher runs as it always did
    assert teacher_eps(reader, x, t, cond, None) is not None and reader.seen[-1] is None


def test_sds_hands_each_render_its_camera():
    reader = _Recorder(True)
    sds = make_guidance("sds", reader, cfg_scale=1.0, weighting="uniform")
    pose = torch.tensor([[0.25, 0, 0, 0, 0], [0.75, 0, 0, 0, 0]])
    x0 = torch.zeros(2, 1)
    t, eps = torch.tensor([2, 7]), torch.zeros(2, 1)
    g, _ = sds.grad(x0, t, eps, cond=torch.ones(2, 1), pose=pose)
    # x_t = a_t * 0 + s_t * 0 = 0, so eps_q = the camera's first column and g = that - 0
    assert torch.equal(g, pose[:, :1])


def _bank_of(images_by_azimuth):
    """A bank function: the camera's azimuth (rounded) picks its images; calls are counted."""
    calls = []

    def bank(pose):
        calls.append(len(pose))
        az = torch.rad2deg(torch.atan2(pose[:, 1], pose[:, 0])).round().int().tolist()
        return torch.stack([images_by_azimuth[a] for a in az])

    return bank, calls


def _pose_at(azimuths):
    n = len(azimuths)
    cams = Cameras(torch.tensor(azimuths), torch.zeros(n), torch.full((n,), 2.8), 40.0)
    return pose_features(cams)


def test_the_camera_oracle_is_the_optimal_denoiser_of_each_sample_s_own_bank():
    g = torch.Generator().manual_seed(0)
    front = (torch.rand(1, 3, 4, 4, generator=g) * 2 - 1).expand(2, -1, -1, -1)  # one image, twice
    side = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1  # two at azimuth 90
    bank, calls = _bank_of({0: front, 90: side})
    oracle = CameraOracle(["a cube, front view"], bank)
    abar = oracle.alphas_cumprod
    t = torch.tensor([300, 300])
    x_t = torch.randn(2, 3, 4, 4, generator=g)
    pose = _pose_at([0.0, 90.0])
    eps = oracle.eps(x_t, t, oracle.encode_prompt(["a cube, front view", ""]), camera=pose)
    a, s = abar[300].sqrt(), (1 - abar[300]).sqrt()
    # one image in the bank (twice): D(x_t) is that image, whatever x_t is
    expected0 = (x_t[0].double() - a * front[0].double()) / s
    assert torch.allclose(eps[0].double(), expected0, atol=1e-5)
    # two: softmax of -|x_t - a x_i|^2 / (2 s^2) by hand
    d2 = torch.stack([(x_t[1].double() - a * im.double()).pow(2).sum() for im in side])
    w = torch.softmax(-d2 / (2 * s**2), 0)
    mean = w[0] * side[0].double() + w[1] * side[1].double()
    assert torch.allclose(eps[1].double(), (x_t[1].double() - a * mean) / s, atol=1e-5)
    # CFG's doubled batch renders each camera once, and a camera seen before not again
    oracle.eps(torch.cat([x_t, x_t]), torch.cat([t, t]), None, camera=torch.cat([pose, pose]))
    assert calls == [2]
    with pytest.raises(ValueError, match="needs each sample's camera"):
        oracle.eps(x_t, t, None)
    with pytest.raises(ValueError, match="no bank for 'a mug, front view'"):
        oracle.encode_prompt(["a mug, front view"])


def test_sds_on_the_true_render_at_its_camera_is_zero_with_the_camera_oracle():
    from dream3d.pipelines.world import camera_oracle
    from scenes.prompts import parse_prompt
    from scenes.render import render

    spec = parse_prompt("a blue cube")  # one shape, one colour: one image per camera
    oracle = camera_oracle(spec, size=16, supersample=1)
    cams = sample_cameras(3, torch.Generator().manual_seed(3))
    x0 = render(["cube"] * 3, ["blue"] * 3, cams, 16, 1) * 2 - 1
    sds = make_guidance("sds", oracle, cfg_scale=7.5, weighting="uniform")
    t, eps = torch.tensor([50, 400, 900]), torch.randn(3, 3, 16, 16)
    cond = oracle.encode_prompt([spec.caption(v) for v in cams.views()])
    g, _ = sds.grad(x0, t, eps, cond, pose=pose_features(cams))
    assert g.abs().max() < 1e-4  # the exact render is where the teacher's noise is the noise
    turned = Cameras(cams.azimuth + 30, cams.elevation, cams.radius, cams.fov)
    g_wrong, _ = sds.grad(x0, t, eps, cond, pose=pose_features(turned))
    assert g_wrong.abs().max() > 0.1  # told another camera, the same render is pulled away
    assert len(camera_oracle(parse_prompt("a chair"), 8).bank(pose_features(cams))[0]) == 24


def test_training_reads_the_camera_and_drops_it_apart_from_the_caption(tmp_path):
    _, camera = _pair()
    g = torch.Generator().manual_seed(0)
    x0, pose = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1, _poses(4)
    cond = camera.encode_prompt(["a red chair, side view"] * 4)
    torch.nn.init.normal_(camera.camera.net[-1].weight, std=0.5)
    with_camera = denoising_loss(camera, x0, cond, torch.Generator().manual_seed(1), pose)
    without = denoising_loss(camera, x0, cond, torch.Generator().manual_seed(1), None)
    assert not torch.isclose(with_camera, without)

    def batch(n, rng):
        cams = sample_cameras(n, rng)
        return (
            torch.rand(n, 3, 16, 16, generator=rng) * 2 - 1,
            ["a red chair"] * n,
            pose_features(cams),
        )

    _, fresh = _pair()
    before = {k: v.clone() for k, v in fresh.camera.state_dict().items()}
    config = TeacherTrainConfig(steps=2, batch=4, ema=0, warmup=1, progress=False)
    train_teacher(fresh, batch, config, tmp_path)
    after = fresh.camera.state_dict()
    assert not torch.equal(after["net.2.weight"], before["net.2.weight"])  # zero layer moved


def test_a_run_outside_the_camera_teacher_s_trained_cameras_is_refused():
    from dream3d.pipelines.world import check_trained_cameras

    check_trained_cameras(CameraConfig())  # the world's own: fine
    check_trained_cameras(CameraConfig(radius=(2.7, 2.9), elevation=(0.0, 60.0)))  # inside
    with pytest.raises(ValueError, match=r"nerf.cameras.radius 2.5..3 lies outside .* 2.6..3"):
        check_trained_cameras(CameraConfig(radius=(2.5, 3.0)))
    with pytest.raises(ValueError, match=r"nerf.cameras.elevation -30..80 lies outside"):
        check_trained_cameras(CameraConfig(elevation=(-30.0, 80.0)))
    with pytest.raises(ValueError, match="fov 60"):
        check_trained_cameras(CameraConfig(fov=60.0))
    assert math.isclose(CameraConfig().fov, 40.0)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--weights", "/no/such.safetensors"], "no tiny teacher weights at /no/such.safetensors"),
        (["--weights", "SPOILT"], "SPOILT"),
        (["--weights", "TEXT"], "is a text-only tiny teacher: use --teacher tiny"),
        (["--set", "nerf.cameras.elevation=[-30, 80]"], "outside the camera teacher's trained"),
        (["--set", "nerf.cameras.fov=60"], "the camera teacher knows 40 only"),
    ],
)
def test_bad_camera_teacher_input_is_one_line_exit_2_and_nothing_written(
    cli, tmp_path, args, words
):
    from dream3d.pipelines.world import TINY_WEIGHTS

    spoilt = tmp_path / "spoilt.safetensors"
    spoilt.write_bytes(b"\x00garbage" * 9)
    names = {"SPOILT": str(spoilt), "TEXT": str(TINY_WEIGHTS)}
    args = [names.get(a, a) for a in args]
    words = words.replace("SPOILT", str(spoilt))
    out = tmp_path / "run"
    result = cli("run", "--prompt", "a chair", "--teacher", "tiny-camera", "--out", str(out), *args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
    assert not out.exists() or not any(out.iterdir())  # checked writable, nothing written


def test_ikl_s_copy_of_a_camera_teacher_starts_as_it_camera_and_all():
    from dream3d.guidance.fake_scores import TeacherCopy

    _, camera = _pair()
    torch.nn.init.normal_(camera.camera.net[-1].weight, std=0.5)
    ikl = make_guidance("ikl", camera, cfg_scale=1.0)
    assert isinstance(ikl.fake, TeacherCopy)
    x_t, t, pose = torch.randn(2, 3, 16, 16), torch.tensor([200, 800]), _poses(2)
    cond = camera.encode_prompt(["a red chair, side view"] * 2)
    with torch.no_grad():
        fake = ikl.eps_fake(x_t, t, cond, None, None, pose=pose)
        assert torch.equal(fake, camera.eps(x_t, t, cond, camera=pose))  # p_g = q, per camera
        assert not torch.equal(fake, camera.eps(x_t, t, cond))


def test_compare_runs_both_guidances_on_the_camera_oracle(tmp_path):
    from dream3d.pipelines.compare import compare
    from dream3d.pipelines.text_to_3d import resolve
    from tests.fast_run import FAST_RUN

    config = resolve("a blue cube", overrides={**FAST_RUN, "teacher": {"name": "oracle-camera"}})
    rows = compare(config, [0], tmp_path, progress=False)
    assert {r["guidance"] for r in rows} == {"sds", "ikl"}
    for side in ("sds-0", "ikl-0"):
        saved = yaml.safe_load((tmp_path / side / "config.yaml").read_text())
        assert saved["teacher"] == {"name": "oracle-camera", "supersample": 2}
        metrics = json.loads((tmp_path / side / "metrics.json").read_text())
        assert metrics["teacher"] == "oracle-camera"


def test_the_shipped_camera_teacher_reads_the_camera_and_a_run_uses_it(cli, tmp_path):
    from dream3d.pipelines.world import TINY_CAMERA_WEIGHTS, load_camera_tiny
    from tests.fast_run import FAST_RUN

    teacher = load_camera_tiny()
    assert teacher.reads_camera and teacher.config.size == 32
    assert teacher.camera.net[-1].weight.abs().max() > 1e-3  # trained away from its zero start
    x_t = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)).expand(
        2, -1, -1, -1
    )
    t = torch.tensor([500, 500])
    cond = teacher.encode_prompt(["a blue cube, front view"] * 2)
    with torch.no_grad():
        a = teacher.eps(x_t, t, cond, camera=_pose_at([0.0, 0.0]))
        b = teacher.eps(x_t, t, cond, camera=_pose_at([0.0, 40.0]))
    assert torch.equal(a[0], a[1]) and (a[1] - b[1]).abs().mean() > 1e-3  # 40 degrees apart
    preset = tmp_path / "fast.yaml"
    preset.write_text(yaml.safe_dump(FAST_RUN))
    out = tmp_path / "run"
    args = ["--prompt", "a blue cube", "--teacher", "tiny-camera", "--preset", str(preset)]
    result = cli("run", *args, "--guidance", "sds", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"] == "tiny-camera" and TINY_CAMERA_WEIGHTS.is_file()
    assert {"corner_ratio", "corner_ratio_truth", "janus"} <= metrics["truth"].keys()


def test_camera_harmonics_are_cos_and_sin_of_k_times_the_azimuth():
    from dream3d.nn import CameraEmbedding

    emb = CameraEmbedding(8, harmonics=4)
    az = torch.tensor([30.0, 135.0, -100.0])
    cams = Cameras(az, torch.tensor([10.0, 40.0, 0.0]), torch.full((3,), 2.8), 40.0)
    pose = pose_features(cams)
    feats = emb.features(pose)
    assert feats.shape == (3, POSE_DIM + 6) and torch.equal(feats[:, :POSE_DIM], pose)
    for k in (2, 3, 4):  # worked out from the angle, not from the powers the code takes
        rad = torch.deg2rad(k * az)
        assert torch.allclose(feats[:, POSE_DIM + 2 * (k - 2)], rad.cos(), atol=1e-5)
        assert torch.allclose(feats[:, POSE_DIM + 2 * (k - 2) + 1], rad.sin(), atol=1e-5)
    # a cube's look repeats every 90 degrees: the 4th harmonic is equal 90 degrees apart
    turned = pose_features(Cameras(az + 90, cams.elevation, cams.radius, cams.fov))
    assert torch.allclose(emb.features(turned)[:, -2:], feats[:, -2:], atol=1e-5)
    assert torch.equal(emb.features(torch.zeros(2, POSE_DIM)), torch.zeros(2, POSE_DIM + 6))
    with pytest.raises(ValueError, match="harmonics"):
        CameraEmbedding(8, harmonics=0)


def test_a_camera_teacher_with_harmonics_starts_as_the_one_it_extends(tmp_path):
    _, camera = _pair()
    torch.nn.init.normal_(camera.camera.net[-1].weight, std=0.5)
    more = TinyTeacher(TinyConfig(**{**CAMERA.__dict__, "camera_harmonics": 4}), fake_encoder)
    more.unet.load_state_dict(camera.unet.state_dict())
    more.camera.extend_from(camera.camera)
    assert more.camera.net[0].weight.shape[1] == POSE_DIM + 6
    x, t, pose = torch.randn(2, 3, 16, 16), torch.tensor([100, 700]), _poses(2)
    cond = camera.encode_prompt(["a red cube, side view"] * 2)
    with torch.no_grad():
        before = camera.eps(x, t, cond, camera=pose)
        assert torch.allclose(more.eps(x, t, cond, camera=pose), before, atol=1e-6)
        torch.nn.init.normal_(more.camera.net[0].weight[:, POSE_DIM:], std=1.0)  # now it reads them
        assert (more.eps(x, t, cond, camera=pose) - before).abs().max() > 1e-3
    more.add_captions(["a red cube, side view"])
    more.save(tmp_path / "h.safetensors")
    back = TinyTeacher.load(tmp_path / "h.safetensors")
    assert back.config.camera_harmonics == 4
    with torch.no_grad():
        assert torch.equal(back.eps(x, t, cond, camera=pose), more.eps(x, t, cond, camera=pose))
    with pytest.raises(ValueError, match="no more harmonics"):
        camera.camera.extend_from(more.camera)
