"""A run that cannot fit in memory is refused before it allocates, with its estimate."""

import pytest
import torch

from dream3d.cli.main import main
from dream3d.memory import BASE, BYTES_PER_SAMPLE, available, check_fits, nerf_run_bytes


def test_the_estimate_counts_weights_four_times_buffers_once_and_each_sample():
    module = torch.nn.Linear(10, 10)  # 110 float32 weights: 440 bytes
    module.register_buffer("steps", torch.zeros(5, dtype=torch.float64))  # 40 bytes
    graph = 2 * 4 * 4 * 3 * BYTES_PER_SAMPLE  # 2 views of 4 x 4 rays of 3 samples
    assert BYTES_PER_SAMPLE == 400
    assert nerf_run_bytes(module, 3, views=2, size=4, samples=3) == 3 * (4 * 440 + 40 + graph)


def test_what_fits_passes_and_what_does_not_is_one_line():
    have = available("cpu")
    assert have > 2**28  # this machine has memory free (the test needs a few hundred MB)
    check_fits(have - BASE - 2**20, "cpu", "a small run")
    with pytest.raises(ValueError) as err:
        check_fits(have, "cpu", "a run of 9 NeRFs")
    message = str(err.value)
    assert message.startswith("a run of 9 NeRFs needs about ") and "\n" not in message
    assert "is free on this machine: ask for less" in message


def test_a_hundred_thousand_particles_are_refused_before_anything_is_built(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--prompt", "a chair", "--particles", "100000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "dream3d: error: a run of 100000 NeRFs (1 view of 32 px a step, 48 samples a ray) "
        "needs about 2."
    ), err
    assert " TB of memory" in err[0]  # 100000 x ~22 MB
    assert not out.exists()  # refused before anything was written, its folder gone again
