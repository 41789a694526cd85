"""The camera teachers' own check and sampling at exact cameras (issue 29, item 3)."""

import csv
import json

import pytest
import torch

from dream3d.cameras import CameraConfig, Cameras, pose_features, sample_cameras
from dream3d.pipelines.teacher import SampleJob, SamplingConfig, sampler
from dream3d.pipelines.teacher_check import CameraCheckJob, camera_iou, check_cameras
from dream3d.sampling import ddim_sample
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from scenes.prompts import parse_prompt
from scenes.render import render
from tests.dream3d.teachers.test_tiny import SMALL, fake_encoder

BLUE_CUBE = parse_prompt("a blue cube")  # one shape, one colour: the camera oracle's bank is 1


def _cameras(n, seed=3):
    return sample_cameras(n, torch.Generator().manual_seed(seed))


def _check(tmp_path, teachers, cameras=3, seed=0):
    job = CameraCheckJob(
        teachers=teachers,
        cameras=cameras,
        objects=("cube",),
        colours=("blue",),
        out=tmp_path,
        sampling=SamplingConfig(steps=10, seed=seed),
        progress=False,
    )
    return check_cameras(job), list(csv.DictReader((tmp_path / "samples.csv").open()))


def test_the_camera_oracle_draws_the_true_render_at_the_asked_camera():
    cams = _cameras(4)
    captions = [BLUE_CUBE.caption(v) for v in cams.views()]
    draw = sampler(SamplingConfig(teacher="oracle-camera", steps=10))
    x = draw(BLUE_CUBE, captions, torch.Generator().manual_seed(0), cams)
    truth = render(["cube"] * 4, ["blue"] * 4, cams, 32) * 2 - 1
    assert (x - truth).abs().max() < 0.01
    # without cameras it draws some from each caption's view: a render, but not these
    x = draw(BLUE_CUBE, captions, torch.Generator().manual_seed(0))
    assert (x - truth).flatten(1).abs().amax(1).min() > 0.2


def test_camera_iou_is_one_on_the_truth_zero_on_white_and_the_coverage_on_black():
    cams = _cameras(2)
    truth = render(["cube"] * 2, ["blue"] * 2, cams, 32) * 2 - 1
    iou, variant = camera_iou(truth, "cube", "blue", cams)
    assert iou.tolist() == [1.0, 1.0] and variant == ["cube", "cube"]
    iou, _ = camera_iou(torch.ones(2, 3, 32, 32), "cube", "blue", cams)  # white: nothing drawn
    assert iou.tolist() == [0.0, 0.0]
    # all dark: |truth| / |image|, counted straight from the pixels of the true render
    dark = ((truth + 1) / 2).amin(1) < 0.8  # foreground: darkest channel 0.2 below white
    iou, _ = camera_iou(-torch.ones(2, 3, 32, 32), "cube", "blue", cams)
    assert torch.allclose(iou, dark.flatten(1).sum(1) / 32**2)
    chairs, variant = camera_iou(
        render(["chair-tall"] * 2, ["red"] * 2, cams, 32) * 2 - 1, "chair", "red", cams
    )
    assert chairs.tolist() == [1.0, 1.0] and variant == ["chair-tall"] * 2  # best variant


def test_the_camera_oracle_scores_one_and_the_text_oracle_less_on_the_same_cameras(tmp_path):
    metrics, samples = _check(tmp_path, ("oracle-camera", "oracle"), cameras=4)
    exact, text = metrics["teachers"]["oracle-camera"], metrics["teachers"]["oracle"]
    assert exact["iou"] >= 0.99 and exact["colour"] == 1.0 and exact["n"] == 4
    assert text["iou"] < 0.9 and text["colour"] == 1.0
    assert all(float(s["iou_oracle"]) < float(s["iou_oracle-camera"]) for s in samples)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    table = (tmp_path / "check.md").read_text()
    assert f"| oracle-camera | {exact['iou']:.3f} | 1.000 | 4 |" in table
    assert (tmp_path / "samples.png").stat().st_size > 0  # the cube is pictured


def test_every_teacher_gets_the_same_cameras_from_the_seed(tmp_path):
    _, alone = _check(tmp_path / "alone", ("oracle-camera",))
    _, both = _check(tmp_path / "both", ("oracle", "oracle-camera"))
    _, other = _check(tmp_path / "other", ("oracle-camera",), seed=1)
    poses = torch.tensor([[float(s[k]) for k in ("azimuth", "elevation", "radius")] for s in alone])
    expected = sample_cameras(3, torch.Generator().manual_seed(0 + 1))  # the seed + 1
    expected = torch.stack([expected.azimuth, expected.elevation, expected.radius], 1)
    assert torch.allclose(poses, expected, atol=1e-3)
    assert [s["azimuth"] for s in both] == [s["azimuth"] for s in alone]
    assert [s["iou_oracle-camera"] for s in both] == [s["iou_oracle-camera"] for s in alone]
    assert [s["azimuth"] for s in other] != [s["azimuth"] for s in alone]


def _camera_teacher(path):
    """A small camera teacher whose camera embedding moves eps, saved with its captions."""
    torch.manual_seed(0)
    teacher = TinyTeacher(TinyConfig(**{**SMALL.__dict__, "camera": True}), encoder=fake_encoder)
    torch.nn.init.normal_(teacher.camera.net[-1].weight, std=0.5)
    teacher.add_captions([BLUE_CUBE.caption(v) for v in ("front", "side", "back", "overhead")])
    teacher.save(path)
    return TinyTeacher.load(path).eval()


def test_the_tiny_camera_teacher_hears_each_sample_s_camera_and_draws_without(tmp_path):
    teacher = _camera_teacher(tmp_path / "camera.safetensors")
    cams = _cameras(2)
    captions = [BLUE_CUBE.caption(v) for v in cams.views()]

    def draw(name, cameras=None):
        config = SamplingConfig(teacher=name, weights=tmp_path / "camera.safetensors", steps=4)
        return sampler(config)(BLUE_CUBE, captions, torch.Generator().manual_seed(0), cameras)

    cond = teacher.encode_prompt(captions)
    by_hand = ddim_sample(
        teacher,
        cond,
        (2, 3, 16, 16),
        4,
        3.0,
        torch.Generator().manual_seed(0),
        clip_x0=1.0,
        camera=pose_features(cams),
    )
    told = draw("tiny-camera", cams)
    assert torch.equal(told, by_hand)
    untold = draw("tiny-camera")
    assert (told - untold).abs().max() > 1e-3  # the camera matters to it ...
    assert torch.equal(draw("tiny", cams), untold)  # ... and never reaches a text-only teacher


def test_a_missing_or_text_only_camera_teacher_file_is_one_line(tmp_path):
    with pytest.raises(ValueError) as err:
        sampler(SamplingConfig(teacher="tiny-camera", weights=tmp_path / "none.safetensors"))
    message = str(err.value)
    assert "no tiny teacher weights at" in message and "none.safetensors" in message
    assert "dream3d teacher train --camera --init" in message and "\n" not in message
    torch.manual_seed(0)
    TinyTeacher(SMALL, encoder=fake_encoder).save(tmp_path / "text.safetensors")
    with pytest.raises(ValueError, match="is a text-only tiny teacher: use --teacher tiny"):
        sampler(SamplingConfig(teacher="tiny-camera", weights=tmp_path / "text.safetensors"))


def test_a_sample_job_at_a_camera_takes_the_camera_s_view_and_radius():
    job = SampleJob("a blue cube", azimuth=100.0, elevation=10.0)
    assert job.view == "side" and job.radius == pytest.approx(2.8)
    cams = job.cameras()
    assert isinstance(cams, Cameras) and len(cams) == job.n and cams.fov == CameraConfig().fov
    assert cams.azimuth.tolist() == [100.0] * job.n and cams.views() == ["side"] * job.n
    assert SampleJob("a blue cube").view == "front" and SampleJob("a blue cube").cameras() is None
    assert SampleJob("a cube", azimuth=0, elevation=70, radius=2.6).view == "overhead"
    # a text-only teacher hears only the view caption: any camera will do
    assert SampleJob("a cube", azimuth=0, elevation=85).view == "overhead"


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"azimuth": 10.0}, "azimuth and elevation go together"),
        ({"radius": 2.7}, "a radius needs an azimuth and an elevation"),
        ({"azimuth": 0.0, "elevation": 10.0, "view": "back"}, "view back disagrees with"),
        (
            {"azimuth": 0.0, "elevation": 85.0, "sampling": SamplingConfig("oracle-camera")},
            "elevation 85 lies outside the camera teacher's trained range -10..80",
        ),
        (
            {
                "azimuth": 0.0,
                "elevation": 10.0,
                "radius": 3.2,
                "sampling": SamplingConfig("oracle-camera"),
            },
            "radius 3.2 lies outside the camera teacher's trained range 2.6..3",
        ),
    ],
)
def test_a_bad_sample_camera_is_one_line(settings, words):
    with pytest.raises(ValueError) as err:
        SampleJob("a blue cube", **settings)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"teachers": ()}, "expected one or more different teachers"),
        ({"teachers": ("tiny", "tiny")}, "expected one or more different teachers"),
        ({"teachers": ("sd",)}, "unknown teacher 'sd'"),
        ({"objects": ("xylophone",)}, "unknown object 'xylophone'"),
        ({"colours": ("teal",)}, "unknown colour 'teal'"),
        ({"cameras": 0}, "cameras must be positive, got 0"),
    ],
)
def test_a_bad_check_job_is_one_line(settings, words):
    with pytest.raises(ValueError) as err:
        CameraCheckJob(**settings)
    assert words in str(err.value) and "\n" not in str(err.value)
