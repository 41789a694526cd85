import pytest
from PIL import Image

from dream3d.pipelines.teacher import SampleJob, SamplingConfig, TinyTrainJob, sample


def test_oracle_sample_writes_a_grid_of_n_images_of_the_asked_size(tmp_path):
    sampling = SamplingConfig(teacher="oracle", steps=4, size=32)
    result = sample(SampleJob("a red chair", view="side", n=10, out=tmp_path, sampling=sampling))
    assert result["prompt"] == "a red chair, side view"
    # save_grid: 8 columns, 2 rows of 32 + 2 border pixels, upscaled 2x
    assert Image.open(result["grid"]).size == (8 * 34 * 2, 2 * 34 * 2)
    assert result["grid"] == str(tmp_path / "a-red-chair-side-oracle.png")


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"steps": 0}, "steps must be positive, got 0"),
        ({"channels": (30, 64)}, "multiples of 8 such as 32,64,64, got (30, 64)"),
        ({"channels": (64,)}, "two or more multiples of 8"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"size": 48}, "size must be one of 32, 64, got 48"),
        ({"prediction": "x0"}, "unknown prediction 'x0'; choose one of: v, eps"),
    ],
)
def test_the_train_job_refuses_bad_settings_in_one_line(settings, words):
    with pytest.raises(ValueError) as err:
        TinyTrainJob(**settings)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_train_job_defaults_are_the_command_line_defaults():
    from dream3d.cli.main import build_parser

    args = build_parser().parse_args(["teacher", "train"])
    job = TinyTrainJob()
    assert (args.steps, args.batch, args.lr, args.warmup) == (20_000, 64, 3e-4, 500)
    assert (job.steps, job.batch, job.lr, job.warmup) == (20_000, 64, 3e-4, 500)
    assert args.channels == job.channels == (32, 64, 64) and args.size == job.size == 32
