import pytest
import torch

from dream3d.pipelines.bench import read_prompts, summarise
from dream3d.pipelines.stats import ALL, choice_lines, choice_records, interval_lines, intervals
from generators.nerf.export import MeshConfig, extract_mesh, save_mesh


def _sphere_run(folder, radius, occ, seconds):
    density = lambda p: 50.0 * (p.norm(dim=-1) < radius).float()  # noqa: E731
    albedo = lambda p: torch.tensor([[0.8, 0.1, 0.1]]).expand(len(p), 3)  # noqa: E731
    save_mesh(extract_mesh(density, albedo, MeshConfig(resolution=48)), folder)
    truth = {"silhouette_iou": 0.9, "occupancy_iou": occ, "chamfer": 0.01, "colour_error": 0.1}
    return folder, {"truth": truth, "train_seconds": seconds}


def test_rows_average_the_seeds_and_diversity_is_the_pairwise_chamfer(tmp_path):
    runs = {
        ("a red sphere", "ikl", 0): _sphere_run(tmp_path / "a", 0.6, 0.5, 10.0),
        ("a red sphere", "ikl", 1): _sphere_run(tmp_path / "b", 0.7, 0.7, 20.0),
    }
    for _, metrics in runs.values():
        metrics["mesh"] = {}
    row = summarise("a red sphere", "ikl", runs, 3)  # seed 2 failed: two seeds count
    assert row["seeds"] == 2 and row["occupancy_iou"] == pytest.approx(0.6)
    assert row["seconds"] == 15.0
    assert row["diversity"] == pytest.approx(0.1, abs=0.01)  # concentric spheres 0.1 apart
    del runs[("a red sphere", "ikl", 1)]
    assert summarise("a red sphere", "ikl", runs, 3)["diversity"] is None
    # a particle run: the diversity is over its particles' meshes
    folder = tmp_path / "particles"
    for k, radius in enumerate((0.6, 0.7)):
        _sphere_run(folder / f"particle-{k}", radius, 0.5, 10.0)
    runs = {("a red sphere", "ikl", 0): (folder, {**runs[("a red sphere", "ikl", 0)][1]})}
    runs[("a red sphere", "ikl", 0)][1]["particles"] = 2
    row = summarise("a red sphere", "ikl", runs, 1)
    assert row["diversity"] == pytest.approx(0.1, abs=0.01)


def test_prompt_files(tmp_path):
    assert read_prompts(None)[0] == "a chair"
    path = tmp_path / "p.txt"
    path.write_text("a red sphere  # the easy one\n\n# skip\na blue cube\n")
    assert read_prompts(path) == ["a red sphere", "a blue cube"]
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompts(path)
    with pytest.raises(ValueError, match="no prompts file"):
        read_prompts(tmp_path / "none.txt")


def _scores():
    """silhouette_iou of 2 prompts x 2 guidances x 3 seeds; (b, ikl, 2) did not finish."""
    values = {
        ("a", "sds"): [0.5, 0.6, 0.7],
        ("a", "ikl"): [0.6, 0.6, 0.9],
        ("b", "sds"): [0.1, 0.2, 0.3],
        ("b", "ikl"): [0.3, 0.1, None],
    }
    return {
        "silhouette_iou": {
            (p, g, s): v for (p, g), vs in values.items() for s, v in enumerate(vs) if v is not None
        }
    }


def test_intervals_are_over_seeds_and_differences_are_paired_seed_by_seed():
    records = intervals(_scores(), ["sds", "ikl"], ["a", "b"], 3)
    got = {(r["prompt"], r["of"]): (r["n"], r["mean"], r["lo"], r["hi"]) for r in records}
    # 3 seeds: 27 resamples, each end the smallest or largest seed (1/27 > 2.5 %)
    assert got[("a", "sds")] == pytest.approx((3, 0.6, 0.5, 0.7))
    # a: ikl - sds = 0.1, 0.0, 0.2 seed by seed
    assert got[("a", "ikl - sds")] == pytest.approx((3, 0.1, 0.0, 0.2))
    # b: two seeds scored for ikl; paired on those two: 0.2, -0.1
    assert got[("b", "ikl")] == pytest.approx((2, 0.2, 0.1, 0.3))
    assert got[("b", "ikl - sds")] == pytest.approx((2, 0.05, -0.1, 0.2))
    # all prompts: a seed counts when every prompt finished; sds seed means 0.3, 0.4, 0.5
    assert got[(ALL, "sds")] == pytest.approx((3, 0.4, 0.3, 0.5))
    # ikl seeds 0, 1: 0.45, 0.35; minus sds 0.3, 0.4: +0.15, -0.05
    assert got[(ALL, "ikl - sds")] == pytest.approx((2, 0.05, -0.05, 0.15))
    lines = interval_lines(records, paired=True)
    assert lines[0] == "| prompt | difference | seeds | silhouette_iou |"
    assert "| a | ikl - sds | 3 | +0.100 [+0.000, +0.200] |" in lines
    assert "| b | sds | 3 | 0.200 [0.100, 0.300] |" in interval_lines(records, paired=False)


def _chair(variant, colour):
    return {"closest_variant": variant, "nearest_colour": colour}


def test_choice_records_over_particles_per_seed_over_seeds_and_of_the_teacher():
    particles = {
        ("a chair", "ikl", s): (None, {"particles": 2, "particle_truth": truths})
        for s, truths in enumerate(
            [
                [_chair("chair-plain", "red"), _chair("chair-arms", "blue")],
                [_chair("chair-plain", "red"), _chair("chair-plain", "red")],
            ]
        )
    }
    single = {
        ("a chair", "sds", s): (None, {"truth": _chair("chair-tall", c)})
        for s, c in enumerate(["red", "blue"])
    }
    teacher = {"a chair": {"variants": ["chair-plain", "chair-arms"], "colours": ["red", "red"]}}
    records = choice_records({**particles, **single}, ["sds", "ikl"], ["a chair"], 2, teacher)
    by = {r["of"]: r for r in records}
    # sds: one distribution over the two seeds: tall, tall; red, blue
    assert by["sds"]["over"] == "the seeds" and by["sds"]["runs"] == 1
    assert by["sds"]["variant_tv"] == pytest.approx((2 / 3,) * 3, abs=1e-4)
    assert by["sds"]["modes"] == (2, 2, 2) and by["sds"]["counts"] == {"red": 1, "blue": 1}
    # ikl: per seed over its 2 particles, modes 2 and 1: mean 1.5 in [1, 2]
    assert by["ikl"]["over"] == "2 particles, per seed" and by["ikl"]["runs"] == 2
    assert by["ikl"]["modes"] == pytest.approx((1.5, 1.0, 2.0))
    # colour tv to the teacher (all red): seed 0 red/blue 0.5, seed 1 red/red 0
    assert by["ikl"]["colour_tv_teacher"] == pytest.approx((0.25, 0.0, 0.5), abs=1e-4)
    # the teacher's own samples against the truth: variants plain/arms, colours red/red
    assert by["teacher"]["variant_tv"] == pytest.approx((1 / 3,) * 3, abs=1e-4)
    assert by["teacher"]["floor"]["colour_tv_floor"] == pytest.approx(0.7656, abs=1e-4)
    assert "ikl - sds" not in by  # sds has single NeRFs here: nothing to pair
    lines = choice_lines(records)
    assert {line.count("|") for line in lines} == {lines[0].count("|")}  # header, rule, rows
    # colour tv 0.75 (red, blue) and 0.875 (red, red); variant tv 1/3 and 2/3; modes 2 and 1
    row = "| a chair | ikl | 2 particles, per seed | 2 | 2 | 0.812 [0.750, 0.875] | "
    assert lines[3].startswith(row + "0.500 [0.333, 0.667] | 1.5 [1, 2] |")


def test_bench_quality_end_to_end_on_two_seeds_with_a_failed_run(tmp_path, monkeypatch):
    import json

    from dream3d.config import merge
    from dream3d.pipelines import bench, stats, sweep
    from dream3d.pipelines.text_to_3d import resolve
    from tests.fast_run import FAST_RUN

    monkeypatch.setattr(stats, "TEACHER_SAMPLES", 1)  # 4 judged teacher samples
    real = sweep.text_to_3d

    def flaky(config, out, **kwargs):
        if config.guidance.name == "sds" and config.train.seed == 1:
            raise RuntimeError("out of memory")
        return real(config, out, **kwargs)

    monkeypatch.setattr(sweep, "text_to_3d", flaky)
    # a blob larger than the sphere: normal_consistency is slow for a mesh inside the truth
    fast = {"train": {"steps": 6}, "nerf": {"field": {"blob_radius": 0.9}}}
    base = resolve("a sphere", overrides=merge(FAST_RUN, fast))
    rows = bench.quality(base, ["a sphere"], 2, tmp_path, progress=False)
    assert rows[-1]["error"] == "RuntimeError: out of memory" and "sphere-sds-1" in rows[-1]["out"]
    sds, ikl = rows[0], rows[1]
    assert (sds["seeds"], ikl["seeds"]) == (1, 2)
    truth = [
        json.loads((tmp_path / f"a-sphere-ikl-{s}" / "metrics.json").read_text())["truth"]
        for s in range(2)
    ]
    assert ikl["silhouette_iou"] == pytest.approx(sum(t["silhouette_iou"] for t in truth) / 2)
    table = (tmp_path / "quality.md").read_text()
    lo, hi = sorted(t["silhouette_iou"] for t in truth)
    assert f"{(lo + hi) / 2:.3f} [{lo:.3f}, {hi:.3f}]" in table  # ikl's two seeds' range
    assert "| a sphere | ikl - sds | 1 |" in table  # paired on the one seed both finished
    assert "| a sphere | teacher | its DDIM samples | 1 | 4 |" in table
    assert "1 run(s) failed and are left out:" in table
    assert (tmp_path / "teacher-a-sphere.json").is_file()
    # restarted: the finished runs are read back, only the failed one runs again
    ran = []
    monkeypatch.setattr(sweep, "text_to_3d", lambda c, out, **k: ran.append(out) or flaky(c, out))
    again = bench.quality(base, ["a sphere"], 2, tmp_path, progress=False)
    assert ran == [tmp_path / "a-sphere-sds-1"] and again[1] == ikl


def test_particle_distributions_are_paired_seed_by_seed():
    def run(colours):
        truths = [_chair("chair-plain", c) for c in colours]
        return None, {"particles": len(colours), "particle_truth": truths}

    runs = {
        ("a sphere", "sds", 0): run(["red", "red"]),  # modes 1, colour tv 0.875
        ("a sphere", "sds", 1): run(["red", "blue"]),  # 2, 0.75
        ("a sphere", "ikl", 0): run(["red", "blue"]),  # 2, 0.75
        ("a sphere", "ikl", 1): run(["red", "blue"]),
        ("a sphere", "ikl", 2): run(["red", "red"]),  # no sds seed 2: not paired
    }
    for _, m in runs.values():
        for t in m["particle_truth"]:
            t["closest_variant"] = "sphere"
    records = choice_records(runs, ["sds", "ikl"], ["a sphere"], 3, {})
    paired = next(r for r in records if r["of"] == "ikl - sds")
    assert paired["runs"] == 2 and paired["modes"] == pytest.approx((0.5, 0.0, 1.0))
    assert paired["colour_tv"] == pytest.approx((-0.0625, -0.125, 0.0))
    line = next(x for x in choice_lines(records) if "ikl - sds" in x)
    assert "| +0.5 [+0, +1] |" in line and "| -0.062 [-0.125, +0.000] |" in line
