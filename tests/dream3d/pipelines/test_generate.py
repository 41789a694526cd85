import json

import pytest

from dream3d.cli.main import main
from dream3d.pipelines.distill import distill, resolve
from dream3d.pipelines.generate import generate
from dream3d.pipelines.text_to_3d import OutputsConfig
from generators.nerf.export import MeshConfig

SMALL = {
    "name": "triplane",
    "z_dim": 4,
    "width": 32,
    "channels": 4,
    "resolution": 8,
    "render": {"samples": 16},
}
QUICK = OutputsConfig(
    views_size=16, views_samples=16, video_frames=2, video_size=16, video_samples=8,
    mesh=MeshConfig(resolution=32),
)  # fmt: skip


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A triplane generator distilled for 2 steps through `dream3d distill`'s door."""
    out = tmp_path_factory.mktemp("triplane")
    over = {"generator": SMALL, "train": {"steps": 2, "batch": 1}, "eval": {"n": 8, "every": 0}}
    metrics = distill(resolve(overrides=over), out, progress=False)
    assert metrics["steps"] == 2 and metrics["n"] == 8
    return out / "generator.safetensors"


def test_the_triplane_generator_takes_a_nerf_runs_teacher_and_guidance():
    """Through the distill door the triplane generator gets `dream3d run`'s camera teacher
    and guidance settings (IKL CFG 7.5, SDS 20, the registry's fake score), not the image
    recipe (CFG 3, DMD weighting); what the user sets wins."""
    ikl = resolve(overrides={"generator": {"name": "triplane"}})
    assert ikl.teacher.name == "tiny-camera" and ikl.guidance.name == "ikl"
    assert (ikl.guidance.cfg_scale, ikl.guidance.weighting, ikl.guidance.fake) == (
        7.5,
        "sds",
        "auto",
    )
    assert (ikl.train.batch, ikl.train.lr) == (4, 1e-3)
    sds = resolve(overrides={"generator": {"name": "triplane"}, "guidance": {"name": "sds"}})
    assert sds.guidance.cfg_scale == 20.0
    own = resolve(
        overrides={"generator": {"name": "triplane"}, "teacher": {"name": "tiny"},
                   "guidance": {"cfg_scale": 3.0}, "train": {"lr": 5e-4}}
    )  # fmt: skip
    assert (own.teacher.name, own.guidance.cfg_scale, own.train.lr) == ("tiny", 3.0, 5e-4)
    image = resolve()  # the one-step generator keeps the image recipe
    assert (image.teacher.name, image.guidance.cfg_scale, image.guidance.weighting) == (
        "tiny", 3.0, "dmd"
    )  # fmt: skip


def test_generate_writes_each_zs_nerf_and_their_spread(weights, tmp_path):
    out = tmp_path / "gen"
    m = generate(weights, "a red chair", n=2, out=out, seed=3, progress=False, outputs=QUICK)
    assert m["held_out"] is True and m["caption"] == "a red chair" and m["n"] == 2
    for k in range(2):
        files = {p.name for p in (out / f"z-{k}").iterdir()}
        assert {"views.png", "turntable.gif", "mesh.glb", "mesh.obj", "mesh.ply"} <= files
        saved = json.loads((out / f"z-{k}" / "metrics.json").read_text())
        assert saved["truth"] == m["z_truth"][k]
    ious = [t["occupancy_iou"] for t in m["z_truth"]]
    assert m["truth"]["occupancy_iou"] == pytest.approx(sum(ious) / 2, abs=1e-4)
    dist = m["distribution"]
    assert dist["n"] == 2 and sum(dist["variant_counts"].values()) == 2
    assert sum(dist["colour_counts"].values()) == 2
    assert {"views.png", "turntable.gif", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert m["ms_per_object"] > 0 and set(m["seconds_per_object"]) >= {"views.png", "mesh"}
    again = generate(
        weights, "a red chair", n=1, out=tmp_path / "again", seed=3, progress=False, outputs=QUICK
    )
    assert again["z_truth"][0] == m["z_truth"][0]  # the same seed draws the same first object
    blue = generate(weights, "a blue mug", n=1, out=tmp_path / "mug", progress=False, outputs=QUICK)
    assert blue["held_out"] is False and blue["truth"]["object"] == "mug"


def test_generate_refuses_bad_input_in_one_line(weights, tmp_path, capsys):
    onestep = "dream3d/weights/onestep-ikl-32.safetensors"
    cases = [
        (["--prompt", "a car", "--weights", str(weights)], "not in the toy world"),
        (["--prompt", " ", "--weights", str(weights)], "prompt is empty"),
        (["--prompt", "a mug", "--weights", str(tmp_path / "none.safetensors")], "no triplane"),
        (["--prompt", "a mug", "--weights", onestep], "not a triplane generator"),
    ]
    for args, message in cases:
        out = tmp_path / "refused"
        assert main(["generate", *args, "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        if message in ("not in the toy world", "prompt is empty"):
            assert not out.exists()  # checked before anything is written
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--prompt", "a mug", "--n", "0"])
    assert exit_.value.code == 2
