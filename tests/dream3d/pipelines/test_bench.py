import pytest
import torch

from dream3d.pipelines.bench import read_prompts, summarise, write_tables
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
