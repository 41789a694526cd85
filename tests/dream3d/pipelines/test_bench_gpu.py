"""`dream3d bench gpu` and the parts of a step, run small on the CPU (the numbers that matter
come from a GPU; here: that every row is made, the memory arithmetic, the report)."""

import time

import pytest
import torch

from dream3d.cli.main import main
from dream3d.pipelines import bench_gpu, bench_parts
from dream3d.pipelines.world import load_tiny


def test_timed_takes_the_median_of_the_timed_calls():
    durations = iter([0.05, 0.05, 0.001, 0.02, 0.001])  # 2 warm-up calls, then 1, 20, 1 ms

    def fn():
        time.sleep(next(durations))

    result = bench_parts.timed(fn, "cpu", repeats=3, warmup=2)
    assert 1 <= result["ms"] < 15  # the median is a 1 ms call (sleep overshoots a little)


def test_guidance_rows_of_the_tiny_teacher():
    teacher = load_tiny()
    rows = bench_parts.guidance_rows("tiny", teacher, 32, "cpu", repeats=1, warmup=0)
    assert [(r["part"], r["fake"]) for r in rows] == [
        ("sds step", "-"),
        ("ikl step", "teacher"),
        ("ikl step", "lora"),
    ]
    assert all("error" not in r and r["ms"] > 0 for r in rows), rows
    n = sum(p.numel() for p in teacher.unet.parameters())  # the copy trains the UNet alone
    # float32 weights, gradients and Adam's two moments: 16 bytes a parameter
    assert rows[0]["trainable MiB"] == 0
    assert rows[1]["trainable MiB"] == pytest.approx(16 * n / 2**20, rel=1e-6)
    assert 0 < rows[2]["trainable MiB"] < rows[1]["trainable MiB"] / 10


def test_render_rows_on_the_cpu():
    rows = bench_parts.render_rows("cpu", rays_side=8, repeats=1, warmup=0, preset="cpu")
    assert [r["part"] for r in rows] == ["render 64 rays, grid", "render 64 rays, no grid"]
    assert all(r["ms"] > 0 for r in rows)


def test_hash_grid_rows_name_every_backend():
    rows = bench_parts.hash_grid_rows("cpu", points=64, repeats=1, warmup=0)
    by = {r["fake"]: r for r in rows}
    assert list(by) == ["torch", "triton", "tcnn"] and by["torch"]["ms"] > 0
    assert "needs a CUDA device" in by["tcnn"]["error"]  # no tcnn on a CPU


def test_an_sd_shaped_teacher_takes_a_guidance_step():
    from dream3d.teachers.shaped import random_sd15

    teacher = random_sd15("cpu", torch.float32, scale=0.05, image_size=64)
    assert teacher.encode_images(torch.zeros(1, 3, 32, 32)).shape == (1, 4, 8, 8)
    rows = bench_parts.guidance_rows("sd", teacher, 32, "cpu", repeats=1, warmup=0)
    assert all("error" not in r for r in rows), rows


def test_an_if_shaped_teacher_takes_a_guidance_step():
    from dream3d.teachers.shaped import random_if

    teacher = random_if("cpu", torch.float32, scale=1 / 32)
    assert teacher.encode_prompt(["a red chair, front view"]).shape == (1, 77, 128)
    rows = bench_parts.guidance_rows("if", teacher, 64, "cpu", repeats=1, warmup=0)
    assert all("error" not in r for r in rows), rows
    assert [r["fake"] for r in rows] == ["-", "teacher", "lora"]


def test_the_shaped_unets_have_the_published_sizes():
    from diffusers import UNet2DConditionModel

    from dream3d.teachers.shaped import if_unet_config, sd15_unet_config

    def millions(config):
        with torch.device("meta"):
            unet = UNet2DConditionModel(**config)
        return sum(p.numel() for p in unet.parameters()) / 1e6

    assert millions(sd15_unet_config()) == pytest.approx(859.5, abs=0.1)  # SD 1.5: 859.52M
    assert millions(if_unet_config()) == pytest.approx(4305, rel=0.01)  # IF-I-XL: "4.3B"


def test_ratio_lines():
    rows = [
        {"run": "cuda preset", "guidance": "sds", "s_per_step": 0.01},
        {"run": "cpu defaults, cuda", "guidance": "sds", "s_per_step": 0.004},
        {"run": "cpu defaults, cpu", "guidance": "sds", "s_per_step": 0.2},
        {"run": "cpu defaults, cuda", "error": "ValueError: a failed run has no ratio"},
    ]
    assert bench_gpu.ratio_lines(rows) == [
        "- sds, cuda preset: 20.0x faster per step than the CPU default",
        "- sds, cpu defaults, cuda: 50.0x faster per step than the CPU default",
    ]


def test_the_report_names_the_date_gpu_and_versions(tmp_path):
    text = bench_gpu.report(tmp_path / "gpu.md", sections=(), work=tmp_path)
    assert (tmp_path / "gpu.md").read_text() == text
    env = bench_gpu.environment()
    assert env["date"] in text and f"torch {torch.__version__}" in text
    assert text.startswith(f"# dream3d on a GPU: {env['gpu']}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_bench_gpu_without_cuda_is_one_line(capsys, tmp_path):
    assert main(["bench", "gpu", "--out", str(tmp_path / "gpu.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA device" in err
    assert not (tmp_path / "gpu.md").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="counts the skips of a CPU machine")
def test_the_cuda_tests_section_runs_pytest_on_the_marked_tests():
    files = bench_gpu.TESTS.rglob("test_*.py")
    marked = sum(f.read_text().count("@pytest.mark.requires_cuda\n") for f in files)
    result = bench_gpu.cuda_tests()
    assert result["rc"] == 0 and result["failures"] == []
    assert result["summary"].startswith(f"{marked} skipped, ") and marked >= 4


def test_a_failing_cuda_test_reaches_the_report_with_its_reason(tmp_path):
    # the first GPU run kept only "FAILED ...": the reason is what one needs without the GPU
    folder = tmp_path / "tests"
    folder.mkdir()
    (folder / "test_one.py").write_text(
        "import pytest\n\n\n@pytest.mark.requires_cuda\ndef test_a():\n"
        "    assert 1 + 1 == 3, 'the kept reason'\n\n\ndef test_unmarked():\n    assert False\n"
    )
    result = bench_gpu.cuda_tests(folder)
    assert result["rc"] == 1 and result["summary"].startswith("1 failed, 1 deselected")
    assert result["failures"][0].startswith("FAILED tests/test_one.py::test_a")
    assert any("test_one.py:6: AssertionError: the kept reason" in f for f in result["failures"])


def test_a_failed_run_is_a_row_and_the_other_runs_still_count(monkeypatch, tmp_path):
    from dream3d.pipelines import bench_speed

    def speed(config, guidances, out, progress):  # the CPU run's numbers; CUDA runs fail
        if config.device == "cuda":
            raise ValueError("the triton hash grid needs a CUDA device")
        return [{"guidance": g, "steps": 2, "s_per_step": 0.5} for g in guidances]

    monkeypatch.setattr(bench_speed, "speed", speed)
    rows = bench_gpu.run_rows(tmp_path, steps=3, cpu_steps=2, progress=False)
    assert [r["run"] for r in rows] == [
        "cuda preset",
        "cpu defaults, cuda",
        "cpu defaults, cpu",
        "cpu defaults, cpu",
    ]
    assert rows[0]["error"] == "ValueError: the triton hash grid needs a CUDA device"
    assert [r["guidance"] for r in rows[2:]] == ["sds", "ikl"]
