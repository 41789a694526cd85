import json

import pytest
import torch

from dream3d.cli.main import main


@pytest.mark.parametrize(
    "args, words",
    [
        (["lab", "modes", "--weighting", "karras"], "choose from 'sds', 'uniform', 'snr', 'dmd'"),
        (["lab", "modes", "--guidance", "vsd"], "choose from 'dmd', 'ikl', 'sds', 'sid'"),
        (["lab", "modes", "--teacher", "sd"], "choose from 'ring8', 'grid25'"),
        (["lab", "modes", "--steps", "-5"], "must be a positive integer, got -5"),
        (["lab", "modes", "--fake-steps", "0"], "must be a positive integer, got 0"),
        (["lab", "modes", "--t-range", "0,1.5"], "0 < t_min <= t_max <= 1"),
        (["lab", "modes", "--t-range", "0.5"], "T_MIN,T_MAX"),
        (["lab", "gan"], "choose from 'dirac', 'modes', 'misaligned'"),
        (["app", "--preset", "fastest"], "unknown preset 'fastest'"),
        (["app", "--port", "0"], "a TCP port is 1-65535, got 0"),
        (["app", "--port", "99999"], "a TCP port is 1-65535, got 99999"),
        (["app", "--port", "http"], "expected a whole number, got 'http'"),
        (["app", "--host", "no-such-host.invalid"], "cannot serve on no-such-host.invalid:7860"),
        (["run", "--prompt", "a chair", "--steps", "1e3"], "expected a whole number, got '1e3'"),
        (["app", "--concurrency", "0"], "must be a positive integer, got 0"),
        (["app", "--queue", "0"], "argument --queue: must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, words):
    result = cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "--prompt", "a chair", "--device", "cuda"], "no CUDA device"),
        (["run", "--prompt", "a chair", "--particles", "100000"], "ask for less"),
        (["distill", "sample", "--prompt", "a chair", "--weights", "JUNK"], "not a generator"),
        (["teacher", "sample", "--prompt", "a chair", "--weights", "JUNK"], "not a tiny-teacher"),
        (["bench", "distill", "--rows", "one-step-gan"], "unknown rows one-step-gan"),
    ],
)
def test_a_refused_command_leaves_no_folder_behind(cli, args, words, tmp_path):
    """Refused after its --out was checked writable (made): the folders it made are gone."""
    if torch.cuda.is_available() and "cuda" in args:
        pytest.skip("this machine has CUDA")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    (tmp_path / "kept").mkdir()
    out = tmp_path / "new" / "deeper"
    args = [str(junk) if a == "JUNK" else a for a in args]
    result = cli(*args, "--out", str(out))
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.safetensors", "kept"]
    result = cli(*args, "--out", str(tmp_path / "kept"))  # a folder that was there stays
    assert result.returncode == 2 and (tmp_path / "kept").is_dir()


def test_lab_from_the_command_line(tmp_path, capsys):
    assert main(["lab", "dirac", "--steps", "50", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert printed.err == f"wrote {tmp_path}/metrics.json\n"  # --quiet: no progress bar
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert json.loads(printed.out) == metrics  # dirac has no curves to leave out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirac_paths.png", "metrics.json"]
    assert metrics["identity_max_abs_diff_float64"] < 1e-12  # Corollary 3.4, to round-off
    starts = 3 * torch.randn(4, 2, generator=torch.Generator().manual_seed(0))  # --seed 0
    assert torch.equal(torch.tensor(metrics["starts"]), starts)
    sds, ikl = (torch.tensor(metrics[k]) for k in ("end_sds", "end_ikl_learned"))
    gap = (sds - ikl).norm(dim=1)
    assert torch.allclose(torch.tensor(metrics["end_gap"]), gap)
    travel = (sds - starts).norm(dim=1).mean()
    assert metrics["travel_mean"] == pytest.approx(float(travel), rel=1e-6)
    # each point moved (0.36 in 50 steps), and IKL with a learned fake score went with SDS
    assert travel > 0.1 and metrics["end_gap_max"] == float(gap.max()) < 0.02 * travel


# Every command that writes into --out checks it first: one line, exit 2, nothing written.
# A file where a folder should be stops the root user too (chmod would not).
WRITERS = [
    ["lab", "modes"],
    ["run", "--prompt", "a red chair"],
    ["compare", "--prompt", "a red chair"],
    ["bench", "quality"],
    ["bench", "speed"],
    ["bench", "distill"],
    ["app"],
    ["distill"],
    ["distill", "sample", "--prompt", "a red chair"],
    ["teacher", "train"],
    ["teacher", "sample", "--prompt", "a red chair"],
    ["teacher", "eval"],
    ["judge", "train"],
]


@pytest.mark.parametrize("args", WRITERS, ids=[" ".join(a[:2]) for a in WRITERS])
def test_an_unwritable_out_is_one_line_and_nothing_is_written(args, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("mine")
    out = blocker / "out"
    assert main([*args, "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert printed.err == f"dream3d: error: cannot write to {out}: Not a directory\n"
    assert printed.out == ""
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]
    assert blocker.read_text() == "mine"


def test_help_explains_the_labs(cli):
    result = cli("lab", "--help")
    assert result.returncode == 0
    assert "mode coverage of IKL vs SDS" in result.stdout


def test_commands_started_at_once_into_one_out_folder_all_pass_the_write_check(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from dream3d.cli.main import _check_writable

    def check(_):
        for _ in range(200):
            _check_writable(tmp_path)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, range(4)))  # re-raises a "cannot write" from any of them
    assert list(tmp_path.iterdir()) == []


def test_a_taken_port_is_one_line_before_the_app_is_built(tmp_path):
    import socket

    from dream3d.app import AppConfig, serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ValueError) as err:
            serve(AppConfig(out=tmp_path / "app"), "127.0.0.1", port, block=False)
    assert str(err.value) == f"cannot serve on 127.0.0.1:{port}: Address already in use"
    assert not (tmp_path / "app").exists()  # refused before anything was written
