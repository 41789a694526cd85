"""Runs built and trained at once in one process (the app's ``--concurrency``) each equal the
same run alone: what a run draws depends on its seed, never on what runs beside it."""

import threading
import time

import torch

from dream3d.guidance import ikl
from dream3d.pipelines import text_to_3d
from dream3d.pipelines.text_to_3d import build, resolve
from dream3d.train import train

FAST = {"train": {"steps": 3, "progress": False}, "nerf": {"render": {"samples": 8}}}


def _trained(config) -> list[torch.Tensor]:
    """The NeRF's and the fake score's tensors after the run's few steps."""
    _, _, generator, guidance, cond_fn = build(config)
    train(generator, guidance, config.train, cond_fn=cond_fn)
    return [*generator.state_dict().values(), *guidance.fake.state_dict().values()]


def test_two_runs_at_once_in_threads_equal_each_run_alone(monkeypatch):
    # the oracle teacher's IKL fake score is a fresh UNet: its weights are drawn at build
    monkeypatch.setattr(ikl, "WARMUP_FROM_SCRATCH", 2)  # its fake-only steps: speed alone
    configs = [
        resolve(
            "a chair",
            overrides={"teacher": {"name": "oracle", "per_view": 4}}
            | FAST
            | {"train": {"steps": 3, "progress": False, "seed": seed}},
        )
        for seed in (0, 1)
    ]
    alone = [_trained(c) for c in configs]
    assert not all(torch.equal(a, b) for a, b in zip(*alone))  # the seeds draw apart

    real = text_to_3d.build_teacher

    def slow_teacher(*args, **kwargs):  # the other run builds while this one waits
        teacher = real(*args, **kwargs)
        time.sleep(0.5)
        return teacher

    monkeypatch.setattr(text_to_3d, "build_teacher", slow_teacher)
    together = [None, None]

    def run(i):
        together[i] = _trained(configs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)  # run 1 starts while run 0 is inside its build
    for thread in threads:
        thread.join()
    for mine, solo in zip(together, alone):
        assert len(mine) == len(solo)
        assert all(torch.equal(a, b) for a, b in zip(mine, solo))
    before = torch.get_rng_state()
    build(configs[0])
    assert torch.equal(torch.get_rng_state(), before)  # nor does a build move the global RNG
