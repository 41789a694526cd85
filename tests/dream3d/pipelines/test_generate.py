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


def test_the_bench_samples_held_in_and_held_out_captions():
    from dream3d.pipelines.bench_amortised import RUN_PROMPTS, sample_captions
    from generators.nerf.amortised import held_out_prompts
    from scenes.prompts import parse_prompt

    captions = sample_captions()
    held = set(held_out_prompts())
    assert len(captions) == 36 and len(set(captions)) == 36
    assert set(captions[24:]) == held and not set(captions[:24]) & held
    assert sum(parse_prompt(c).colour is None for c in captions) == 12  # one per object
    in_runs = [parse_prompt(p).text in held for p in RUN_PROMPTS]
    assert in_runs == [False, False, True, True]  # two held-in, two held-out


def test_the_bench_tables_hold_means_over_captions_and_ratios_to_runs():
    """Two guidances, two colourless held-in captions and one held-out, two z's each.
    ikl's 3D IoU per caption: 0.5, 0.7 (held-in) -> 0.600 [0.500, 0.700]; its chair objects
    are two variants in two colours (2 modes), sds's one (1 mode): ikl - sds = +1 on the
    chair, 0 on the mug. The runs of "a chair" average 0.8 for ikl: ratio 0.5 / 0.8; of "a red
    chair" 0.5: ratio 0.3 / 0.5."""
    from dream3d.pipelines.bench_amortised import tables

    def t(iou, variant="chair-tall", colour="red", **more):
        return {"occupancy_iou": iou, "silhouette_iou": 0.9, "closest_variant": variant,
                "nearest_colour": colour, "janus": 0} | more  # fmt: skip

    per = {
        ("ikl", "a chair"): [t(0.4, "chair-tall", "red"), t(0.6, "chair-plain", "blue")],
        ("ikl", "a mug"): [t(0.7, "mug", "red"), t(0.7, "mug", "red")],
        ("ikl", "a red chair"): [t(0.2, colour_error=0.1), t(0.4, colour_error=0.3)],
        ("sds", "a chair"): [t(0.3), t(0.3)],
        ("sds", "a mug"): [t(0.1, "mug"), t(0.1, "mug")],
        ("sds", "a red chair"): [t(0.1, colour_error=0.5), t(0.1, colour_error=0.5)],
    }
    held = {"a chair": False, "a mug": False, "a red chair": True}
    per_caption = {k: {"truths": v, "ms": 10.0, "held_out": held[k[1]]} for k, v in per.items()}
    runs = {
        "a chair": {"ikl": [{"occupancy_iou": 0.7}, {"occupancy_iou": 0.9}]},
        "a red chair": {"ikl": [{"occupancy_iou": 0.4}, {"occupancy_iou": 0.6}]},
    }
    lines = tables(per_caption, ["ikl", "sds"], list(held), runs)
    text = "\n".join(lines)
    assert "| ikl | held-in (2) | 0.900 | 0.600 [0.500, 0.700] |" in text
    assert "| ikl | held-out (1) | 0.900 | 0.300 | 0.200 |" in text
    assert "| a chair | False | 0.500 | 0.800 | 0.625 |" in text
    assert "ikl, held-in captions of the runs: generator 0.500 / runs 0.800 = 0.625" in text
    assert "ikl, held-out captions of the runs: generator 0.300 / runs 0.500 = 0.600" in text
    assert "| ikl | 2 | 1.500 [1.000, 2.000] |" in text  # modes: chair 2, mug 1
    assert "Modes, ikl minus sds, caption by caption: 0.500 [0.000, 1.000]." in text
    assert "ikl 10.0 ms, sds 10.0 ms" in text


def test_bench_amortised_scores_each_object_and_draws_the_picture(weights, tmp_path):
    from dream3d.pipelines.bench_amortised import bench_amortised

    out = tmp_path / "bench"
    result = bench_amortised(
        {"ikl": weights}, out, n=2, captions=["a mug", "a red chair"], run_prompts=[],
        progress=False,
    )  # fmt: skip
    objects = result["objects"]
    assert [(o["caption"], o["z"], o["held_out"]) for o in objects] == [
        ("a mug", 0, False), ("a mug", 1, False), ("a red chair", 0, True), ("a red chair", 1, True)
    ]  # fmt: skip
    mine = generate(weights, "a mug", n=2, out=tmp_path / "g", progress=False, outputs=QUICK)
    assert objects[0]["closest_variant"] == mine["z_truth"][0]["closest_variant"]
    assert {"amortised.md", "amortised.csv", "amortised.png"} <= {p.name for p in out.iterdir()}


def test_the_apps_instant_tab_generates_both_guidances_on_the_same_z(weights, tmp_path):
    from dream3d.app import AppConfig, instant_objects

    app = AppConfig(out=tmp_path / "app", triplane_weights={"ikl": weights, "sds": weights})
    shown = instant_objects(app, " a mug ", 2, 5)
    assert list(shown) == ["ikl", "sds"]
    for s in shown.values():
        assert s["views"].is_file() and s["mesh"].is_file() and s["metrics"]["n"] == 2
    # the same file and z's: the same objects in both columns
    assert shown["ikl"]["metrics"]["z_truth"] == shown["sds"]["metrics"]["z_truth"]
    for prompt, n, message in (("", 2, "prompt is empty"), ("a car", 2, "vocabulary"),
                               ("a mug", 0, "objects"), ("a mug", 9, "objects")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            instant_objects(app, prompt, n, 0)
