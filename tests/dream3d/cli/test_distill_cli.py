from types import SimpleNamespace

import pytest

from dream3d.cli.main import main


@pytest.fixture()
def cli(capsys):
    """`dream3d distill ARGS` in this process: its exit code, stdout and stderr."""

    def run(*args):
        try:
            code = main(["distill", *args])
        except SystemExit as stop:  # argparse's own errors and --help
            code = stop.code
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


@pytest.mark.parametrize(
    "args, words",
    [
        (["--prompt", "a purple xylophone"], "not in the toy world's vocabulary (objects: chair"),
        (["--prompt", " "], "the prompt is empty"),
        (["--steps", "0"], "must be a positive integer, got 0"),
        (["--set", "teacher.weights=/nonexistent.safetensors"], "no tiny teacher weights at"),
        (["--guidance", "vsd"], "invalid choice: 'vsd'"),
        (["--generator", "gan"], "invalid choice: 'gan'"),
        (["--teacher", "oracle"], "invalid choice: 'oracle'"),
        (["--set", "train.steps=banana"], "train.steps: expected a whole number, got 'banana'"),
        (["--set", "eval.n=2"], "eval n must be >= 4"),
        (["--config", "/nonexistent/config.yaml"], "no config file at /nonexistent/config.yaml"),
        (["--guidance", "sid", "--alpha", "-1"], "SiD alpha must be a finite number >= 0"),
        (["--alpha", "1"], "guidance: unknown setting alpha"),  # IKL has none
        (["--guidance", "dmd", "--fake-steps", "0"], "must be a positive integer, got 0"),
        (["--ema", "0"], "EMA half-life must be > 0 steps, got 0.0"),
        (["--set", "train.betas=[1.0, 0.999]"], "Adam betas must be two numbers in [0, 1)"),
        (["--set", "train.betas=[0.9]"], "train.betas: expected 2 values, got 1"),
        # ranges the components check in their own configs, as in run, compare and bench
        (["--set", "train.log_every=0"], "train.log_every must be >= 1, got 0"),
        (["--set", "guidance.t_max_end=1.5"], "guidance.t_max_end must be in (0, 1], got 1.5"),
        (["--set", "guidance.fake_size=0"], "guidance.fake_size must be >= 1, got 0"),
        (["--set", "generator.sigma_init=0"], "sigma_init must be > 0, got 0.0"),
        (
            ["--generator", "triplane", "--set", "generator.cameras.fov=0"],
            "generator.cameras.fov must be in (0, 180), got 0.0",
        ),
        (
            ["--generator", "triplane", "--set", "generator.cameras.elevation=[80,-10]"],
            "generator.cameras: elevation [80, -10]: the min is above the max",
        ),
        (
            ["--generator", "triplane", "--set", "generator.render.samples=0"],
            "generator.render.samples must be >= 1, got 0",
        ),
        (
            ["--generator", "triplane", "--set", "generator.reg.orient=-1"],
            "generator.reg.orient must be >= 0, got -1.0",
        ),
        (["sample"], "sample needs --prompt"),
        (["sample", "--prompt", "a chair", "--weights", "/nonexistent.safetensors"], "not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, words, tmp_path):
    result = cli(*args, "--out", str(tmp_path))  # a default --out would land in the checkout
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_resume_without_a_checkpoint_is_one_line_and_keeps_the_folder(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = cli("--resume", "--out", str(out), "--steps", "1")
    assert result.returncode == 2
    assert (
        result.stderr.strip() == f"dream3d: error: --resume: no checkpoint at {out}/checkpoint.pt"
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written or lost
    assert (out / "notes.txt").read_text() == "mine"


def test_a_corrupt_generator_file_is_one_line(cli, tmp_path):
    bad = tmp_path / "generator.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    result = cli("sample", "--prompt", "a chair", "--weights", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a generator safetensors file" in lines[0]
    assert bad.read_bytes() == b"not a safetensors file at all"


def test_help_names_every_choice_and_default(cli):
    text = cli("--help").stdout
    for words in (
        "onestep,dirac",
        "sds,ikl",
        "default 600, dirac 300",
        "ikl 2, sid 1, dmd 5",
        "ikl 3, sds 3, sid 3, dmd 3",
        "sds,ikl,sid,dmd",
    ):
        assert words in " ".join(text.split()), words
