import pytest
import torch

from dream3d.pipelines.bench import (
    read_prompts,
    seed_intervals,
    summarise,
    t_interval,
    write_tables,
)
from generators.nerf.export import MeshConfig, extract_mesh, save_mesh


def _sphere_run(folder, radius, occ, seconds):
    density = lambda p: 50.0 * (p.norm(dim=-1) < radius).float()  # noqa: E731
    albedo = lambda p: torch.tensor([[0.8, 0.1, 0.1]]).expand(len(p), 3)  # noqa: E731
    save_mesh(extract_mesh(density, albedo, MeshConfig(resolution=48)), folder)
    truth = {"silhouette_iou": 0.9, "occupancy_iou": occ, "chamfer": 0.01, "colour_error": 0.1}
    return folder, {"truth": truth, "train_seconds": seconds}


def test_rows_average_the_seeds_and_diversity_is_the_pairwise_chamfer(tmp_path):
    runs = [
        _sphere_run(tmp_path / "a", 0.6, 0.5, 10.0),
        _sphere_run(tmp_path / "b", 0.7, 0.7, 20.0),
    ]
    row = summarise("a red sphere", "ikl", runs)
    assert row["occupancy_iou"] == pytest.approx(0.6) and row["seconds"] == 15.0
    assert row["diversity"] == pytest.approx(0.1, abs=0.01)  # concentric spheres 0.1 apart
    assert summarise("a red sphere", "sds", runs[:1])["diversity"] is None
    write_tables([row, {**row, "guidance": "sds", "occupancy_iou": 0.2}], tmp_path, ["sds", "ikl"])
    table = (tmp_path / "quality.md").read_text().splitlines()
    assert table[2].startswith("| a red sphere | ikl | 2 | 0.900 | 0.600 |")
    assert table[-2].startswith("| **mean** | **sds** |  | 0.900 | 0.200 |")
    assert table[-1].startswith("| **mean** | **ikl** |  | 0.900 | 0.600 |")
    assert (tmp_path / "quality.csv").read_text().count("\n") == 3


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


def test_intervals_are_over_seeds_of_the_prompt_means(tmp_path):
    # 0.5, 0.7, 0.9: sd 0.2, t_0.975 with 2 degrees of freedom 4.302653 -> 4.302653 x 0.2 / sqrt 3
    mean, half = t_interval([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and half == pytest.approx(0.496828, abs=1e-6)
    assert t_interval([0.3]) == (0.3, None)
    # seed 0 scores 0.4 and 0.6 on two prompts, seed 1 0.8 and 1.0: seed means 0.5 and 0.9,
    # sd 0.282843, t_0.975 with 1 degree of freedom 12.706205
    runs = [
        [
            {"silhouette_iou": 0.4, "occupancy_iou": 0.1},
            {"silhouette_iou": 0.6, "occupancy_iou": 0.3},
        ],
        [
            {"silhouette_iou": 0.8, "occupancy_iou": 0.2},
            {"silhouette_iou": 1.0, "occupancy_iou": 0.2},
        ],
    ]
    intervals = seed_intervals({"ikl": runs})["ikl"]
    assert intervals["silhouette_iou"][0] == pytest.approx(0.7)
    assert intervals["silhouette_iou"][1] == pytest.approx(12.706205 * 0.282843 / 2**0.5, rel=1e-5)
    assert intervals["occupancy_iou"] == (pytest.approx(0.2), pytest.approx(0.0, abs=1e-12))
    row = {"prompt": "a red sphere", "guidance": "ikl", "seeds": 2, "silhouette_iou": 0.7}
    write_tables([row], tmp_path, ["ikl"], {"ikl": intervals})
    assert (
        "- ikl: silhouette_iou 0.700 ± 2.541, occupancy_iou 0.200 ± 0.000"
        in (tmp_path / "quality.md").read_text()
    )
