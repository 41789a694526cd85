import subprocess
import sys

import pytest

from dream3d.cli.main import main


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dream3d.cli.main", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["lab", "modes", "--weighting", "karras"], "choose from 'sds', 'uniform', 'snr', 'dmd'"),
        (["lab", "modes", "--guidance", "vsd"], "choose from 'ikl', 'sds'"),
        (["lab", "modes", "--teacher", "sd"], "choose from 'ring8', 'grid25'"),
        (["lab", "modes", "--steps", "-5"], "must be a positive integer, got -5"),
        (["lab", "modes", "--fake-steps", "0"], "must be a positive integer, got 0"),
        (["lab", "modes", "--t-range", "0,1.5"], "0 < t_min <= t_max <= 1"),
        (["lab", "modes", "--t-range", "0.5"], "T_MIN,T_MAX"),
        (["lab", "gan"], "choose from 'dirac', 'modes', 'misaligned'"),
        (["lab", "modes", "--out", "/proc/dream3d"], "cannot write to /proc/dream3d"),
        (["app", "--preset", "fastest"], "unknown preset 'fastest'"),
        (["app", "--out", "/proc/dream3d"], "cannot write to /proc/dream3d"),
        (["app", "--port", "0"], "must be a positive integer, got 0"),
        (["app", "--concurrency", "0"], "must be a positive integer, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, words):
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_lab_from_the_command_line(tmp_path, capsys):
    assert main(["lab", "dirac", "--steps", "50", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert '"identity_max_abs_diff_float64"' in out
    assert (tmp_path / "metrics.json").exists()


def test_help_explains_the_labs():
    result = _cli("lab", "--help")
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
