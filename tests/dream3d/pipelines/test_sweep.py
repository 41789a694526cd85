import json
import sys
import time
from dataclasses import replace

import pytest
import torch
import yaml

from dream3d.config import merge, to_dict
from dream3d.pipelines.compare import side, sides
from dream3d.pipelines.sweep import finished, run_all
from dream3d.pipelines.text_to_3d import resolve, slug
from tests.fast_run import FAST_RUN

# each prompt with the radius of its starting density blob: a mesh that sits inside a shell
# of the truth's points makes normal_consistency's KD-tree queries visit most of its 200k
# points (5 s for the default blob in the chair, 66 s for a 0.3 blob in the sphere)
PROMPTS = {"a chair": 0.3, "a red sphere": 0.9}
SEEDS = (0, 1)
TINY = merge(FAST_RUN, {"train": {"steps": 2, "save_every": 0}})  # outputs are most of it


def _jobs(folder):
    """2 prompts x sds, ikl x 2 seeds, a folder each."""
    jobs = []
    for prompt, blob in PROMPTS.items():
        base = resolve(prompt, overrides=merge(TINY, {"nerf": {"field": {"blob_radius": blob}}}))
        for name, guidance in sides().items():
            for seed in SEEDS:
                jobs.append((side(base, guidance, seed), folder / f"{slug(prompt)}-{name}-{seed}"))
    return jobs


def _broken(folder):
    """A job whose teacher weights do not exist."""
    config = resolve("a chair", overrides=TINY)
    return replace(config, teacher=replace(config.teacher, weights=str(folder / "no.pt"))), folder


def _scores(outcomes):
    return [(o.metrics["truth"], o.metrics["final_loss"]) for o in outcomes]


def test_missing_ray_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ValueError, match=r'^the sweep needs Ray: pip install -e "\.\[sweep\]"$'):
        run_all(_jobs(tmp_path)[:1], ray="")


def _no_ray_running(address=None):
    raise ConnectionError("Could not find any running Ray instance.")


def test_unreachable_addresses_are_one_line_and_fast(monkeypatch, tmp_path):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()  # runs before the module's local Ray starts
    jobs = _jobs(tmp_path)[:1]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="^cannot reach a Ray cluster at 127.0.0.1:1: "):
        run_all(jobs, ray="127.0.0.1:1")
    with pytest.raises(ValueError, match="^cannot reach a Ray cluster at ray://127.0.0.1:1: "):
        run_all(jobs, ray="ray://127.0.0.1:1")
    with monkeypatch.context() as patch:  # what ray.init("auto") raises with no Ray running
        # (a real "auto" here would find a Ray that another test on this machine runs)
        patch.setattr(ray, "init", _no_ray_running)
        with pytest.raises(ValueError, match="^no Ray cluster at auto: ConnectionError: Could"):
            run_all(jobs, ray="auto")
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        run_all(jobs, ray="head-node")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # Ray's own choice over any address
    for address in ("", "auto"):
        with pytest.raises(ValueError, match="^cannot reach a Ray cluster at 127.0.0.1:1: "):
            run_all(jobs, ray=address)
    assert time.perf_counter() - start < 5
    assert not ray.is_initialized() and not (tmp_path / "a-chair-sds-0").exists()


def test_finished_reads_old_configs_with_todays_defaults(tmp_path):
    config = resolve("a chair", overrides={"train": {"seed": 3}})
    (tmp_path / "metrics.json").write_text(json.dumps({"truth": {"silhouette_iou": 0.5}}))
    saved = to_dict(config)
    del saved["nerf"]["reg"]["normal_smooth"]  # saved before the setting existed: default now
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    assert finished(config, tmp_path) == {"truth": {"silhouette_iou": 0.5}}
    assert finished(side(config, config.guidance, 4), tmp_path) is None  # another seed
    smoother = replace(config.nerf.reg, normal_smooth=0.5)
    assert finished(replace(config, nerf=replace(config.nerf, reg=smoother)), tmp_path) is None
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**saved, "retired_setting": 1}))
    assert finished(config, tmp_path) is None  # no longer parses
    (tmp_path / "config.yaml").write_text("prompt: [a chair\n")
    assert finished(config, tmp_path) is None
    assert finished(config, tmp_path / "elsewhere") is None


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU Ray on this machine for the module's tests."""
    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAY_ADDRESS", raising=False)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sweeps(local_ray, tmp_path_factory):
    """The 8 jobs and a broken one (second), run serially and on Ray, with 1 torch thread."""
    folder = tmp_path_factory.mktemp("sweep")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = _jobs(folder / "serial")
        serial.insert(1, _broken(folder / "serial-broken"))
        on_ray = _jobs(folder / "ray")
        on_ray.insert(1, _broken(folder / "ray-broken"))
        return {
            "serial": run_all(serial, progress=False),
            "ray": run_all(on_ray, progress=False, ray="", cpus=1),
            "folder": folder,
        }
    finally:
        torch.set_num_threads(threads)


def test_ray_gives_the_serial_numbers(sweeps):
    serial, on_ray = sweeps["serial"], sweeps["ray"]
    good = [o for i, o in enumerate(serial) if i != 1]
    assert [o.error for o in good] == [None] * 8
    assert [(o.config.prompt, o.config.guidance.name, o.config.train.seed) for o in good] == [
        (p, g, s) for p in PROMPTS for g in ("sds", "ikl") for s in SEEDS
    ]
    truths = [o.metrics["truth"] for o in good]
    assert all(0 < t["silhouette_iou"] < 1 and 0 < t["occupancy_iou"] < 1 for t in truths)
    assert all(t["chamfer"] > 0 for t in truths)
    assert truths[0] != truths[1] and truths[0] != truths[2]  # seeds and guidances differ
    assert _scores(o for i, o in enumerate(on_ray) if i != 1) == _scores(good)
    assert [o.out for o in on_ray][2] == sweeps["folder"] / "ray" / "a-chair-sds-1"


def test_a_failing_job_is_its_outcome_and_the_others_run(sweeps):
    for outcomes in (sweeps["serial"], sweeps["ray"]):
        broken = outcomes[1]
        assert broken.metrics is None
        assert broken.error.startswith("ValueError: no tiny teacher weights at ")
        assert "no.pt; train them: dream3d teacher train" in broken.error
        assert all(o.metrics is not None and o.error is None for o in outcomes[2:])


def test_a_restarted_sweep_runs_nothing(sweeps, local_ray, monkeypatch):
    folder = sweeps["folder"]
    for kind in ("serial", "ray"):
        jobs = _jobs(folder / kind)
        stamps = [(out / "metrics.json").stat().st_mtime_ns for _, out in jobs]
        monkeypatch.setattr(local_ray, "remote", pytest.fail)  # nothing may become a task
        again = run_all(jobs, progress=False, ray=None if kind == "serial" else "")
        assert [(out / "metrics.json").stat().st_mtime_ns for _, out in jobs] == stamps
        expected = [o for i, o in enumerate(sweeps[kind]) if i != 1]
        assert [o.metrics for o in again] == [o.metrics for o in expected]
    assert local_ray.is_initialized()  # the caller's Ray is left running


def test_a_task_no_node_can_hold_is_refused(local_ray, tmp_path):
    config, out = _jobs(tmp_path)[0]
    with pytest.raises(
        ValueError, match=r"^no Ray node has 4 CPUs for a task \(the most CPUs: 2\)$"
    ):
        run_all([(config, out)], progress=False, ray="", cpus=4)
    with pytest.raises(ValueError, match="^no Ray node has 1 CPU and a GPU for a task"):
        run_all([(replace(config, device="cuda"), out)], progress=False, ray="", cpus=1)
    with pytest.raises(ValueError, match="^two jobs of the sweep write to the same folder$"):
        run_all([(config, out), (config, out)], progress=False, ray="", cpus=1)
    assert local_ray.is_initialized() and not out.exists()


def test_rays_retry_lines_are_held_back_when_it_fails_and_kept_when_it_connects(
    monkeypatch, tmp_path, capfd
):
    import os

    ray = pytest.importorskip("ray")
    from dream3d.pipelines import sweep

    def failing(address=None):
        os.write(2, b"gcs_client.cc:210: Failed to get cluster ID\n" * 3)  # as Ray's C++ core
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")

    monkeypatch.setattr(sweep, "_check_reachable", lambda address: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # another test's Ray may be up
    monkeypatch.setattr(ray, "init", failing)
    with pytest.raises(ValueError, match="^no Ray cluster at 10.0.0.1:6379: ConnectionError"):
        sweep._connect(ray, "10.0.0.1:6379")
    assert capfd.readouterr().err == ""
    monkeypatch.setattr(ray, "init", lambda address=None: os.write(2, b"Connected.\n"))
    assert sweep._connect(ray, "10.0.0.1:6379") is True
    assert capfd.readouterr().err == "Connected.\n"
