"""A sweep: many `dream3d run`s (prompts x guidances x seeds, ...), each into its own folder.

``run_all`` takes (config, out) jobs and returns an ``Outcome`` per job, in job order: the
run's metrics, or the one-line error that stopped it (the other jobs still run). A job whose
``out`` already holds a finished run of the same config tree is read back, not run again, so
an interrupted sweep restarted into the same folders only runs what is missing.

Without ``ray`` the jobs run one after another in this process. With ``ray`` each job is one
Ray task of ``cpus`` CPUs (and a GPU for device cuda) running in its own worker with that many
torch threads; on a CPU a run's numbers depend on its config and thread count only, so they
are the ones a serial sweep with the same thread count gives. ``ray=""`` starts a Ray on this
machine (or joins one that ``ray start`` began here); RAY_ADDRESS, when set, names the
cluster instead of any address given (as in ``ray.init``). On a cluster:

    ray start --head                      # on the head node (prints HEAD:6379)
    ray start --address HEAD:6379         # on every other node
    dream3d bench quality --ray HEAD:6379 --out /shared/bq   # or RAY_ADDRESS=HEAD:6379

Every node needs this repository installed (``pip install -e ".[sweep]"``) and must see
``--out`` (and any weights file a config names) at the same path: a shared filesystem. Where
the cluster uses Ray's token authentication (the default from Ray 2.61), the nodes and the
machine that runs the sweep need the head's token (``ray get-auth-token`` there, then
RAY_AUTH_TOKEN or ~/.ray/auth_token).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml
from tqdm.auto import tqdm

from dream3d.config import from_dict, to_dict
from dream3d.pipelines.text_to_3d import TextTo3DConfig, text_to_3d

CONNECT_TIMEOUT = 3.0  # seconds to reach a Ray head before calling its address unreachable


@dataclass
class Outcome:
    """What became of one job of a sweep."""

    config: TextTo3DConfig
    out: Path
    metrics: dict | None  # metrics.json's content; None when the run failed
    error: str | None  # "ExceptionType: message" when it failed


def finished(config, out: Path) -> dict | None:
    """metrics.json of a finished run in ``out`` made with the same config tree (any
    experiment's: a TextTo3DConfig, a DistillConfig), else None."""
    done, saved = Path(out) / "metrics.json", Path(out) / "config.yaml"
    if not (done.is_file() and saved.is_file()):
        return None
    try:  # read back: a setting added since the run was saved takes its default
        then = from_dict(type(config), yaml.safe_load(saved.read_text()))
        metrics = json.loads(done.read_text())
    except (ValueError, TypeError, yaml.YAMLError):  # a config that no longer parses
        return None
    return metrics if _tree(then) == _tree(config) else None


def _tree(config) -> dict:
    return yaml.safe_load(yaml.safe_dump(to_dict(config), sort_keys=False))


def run_once(config: TextTo3DConfig, out: Path, progress: bool) -> dict:
    """finished(config, out) or text_to_3d(config, out, progress=progress)."""
    return finished(config, out) or text_to_3d(config, out, progress=progress)


def one_line(err: BaseException) -> str:
    """ "ExceptionType: first line of its message"."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def run_all(
    jobs: list[tuple[TextTo3DConfig, Path]],
    progress: bool = True,
    ray: str | None = None,
    cpus: int | None = None,
) -> list[Outcome]:
    """Every job's Outcome, in job order: run here one after another (``ray`` None), or as Ray
    tasks of ``cpus`` CPUs each (default: this process's torch threads) on a local Ray ("")
    or the cluster at the address ``ray`` ("auto", "HOST:PORT", "ray://HOST:PORT")."""
    if ray is None:
        return [_serial(config, Path(out), progress) for config, out in jobs]
    return _on_ray(jobs, progress, ray, torch.get_num_threads() if cpus is None else cpus)


def _serial(config: TextTo3DConfig, out: Path, progress: bool) -> Outcome:
    try:
        return Outcome(config, out, run_once(config, out, progress), None)
    except Exception as err:  # a failed run is its outcome; KeyboardInterrupt stops the sweep
        return Outcome(config, out, None, one_line(err))


def _on_ray(jobs, progress: bool, address: str, cpus: int) -> list[Outcome]:
    """Jobs finished in their folders read here; the others as Ray tasks, gathered."""
    ray = _import_ray()
    if cpus < 1:
        raise ValueError(f"a sweep task needs at least 1 CPU, got {cpus}")
    outs = [Path(out) for _, out in jobs]
    if len(set(outs)) < len(outs):
        raise ValueError("two jobs of the sweep write to the same folder")
    outcomes = {}
    for i, (config, out) in enumerate(jobs):
        if (metrics := finished(config, out)) is not None:
            outcomes[i] = Outcome(config, Path(out), metrics, None)
    todo = [i for i in range(len(jobs)) if i not in outcomes]
    if todo:
        started = _connect(ray, address)
        try:
            _check_fits(ray, cpus, [jobs[i][0] for i in todo])
            task = ray.remote(_task)
            pending = {_submit(task, *jobs[i], cpus): i for i in todo}
            outcomes |= _gather(ray, pending, jobs, progress)
        finally:
            if started:
                ray.shutdown()
    return [outcomes[i] for i in range(len(jobs))]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError('the sweep needs Ray: pip install -e ".[sweep]"') from None
    return ray


def _connect(ray, address: str) -> bool:
    """Ray initialised for ``address`` unless it already is; True when this call did it."""
    if ray.is_initialized():
        return False
    used = os.environ.get("RAY_ADDRESS") or address  # ray.init lets RAY_ADDRESS win
    _check_reachable(used)
    with _held_stderr() as held:
        try:
            ray.init(address=address or None)
        except ConnectionError as err:  # "auto" with no cluster, or no Ray at that port
            held.drop = True  # Ray's retry lines: the error says it in one
            raise ValueError(f"no Ray cluster at {used}: {one_line(err)}") from None
    return True


@contextmanager
def _held_stderr():
    """What reaches file descriptor 2 inside (Ray's C++ core writes a line per retry there
    while it connects) is held back, then written out at the end unless ``.drop`` was set."""
    held = SimpleNamespace(drop=False)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            if text and not held.drop:
                sys.stderr.write(text)


def _check_reachable(address: str) -> None:
    """A ValueError within CONNECT_TIMEOUT when nothing listens at [ray://]HOST:PORT (ray.init
    itself retries for minutes); "" and "auto" are left to Ray."""
    if address in ("", "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r}: expected HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT).close()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ValueError(f"cannot reach a Ray cluster at {address}: {reason}") from None


def _gpus(config: TextTo3DConfig) -> int:
    return 1 if config.device == "cuda" else 0


def _check_fits(ray, cpus: int, configs: list[TextTo3DConfig]) -> None:
    """A ValueError when no node of the cluster has the CPUs and GPU a task asks for (Ray
    would wait for one forever)."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for gpus in {_gpus(config) for config in configs}:
        if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
            most = max((r.get("CPU", 0) for r in nodes), default=0)
            need = f"{cpus} CPU{'s' if cpus > 1 else ''}" + (" and a GPU" if gpus else "")
            raise ValueError(f"no Ray node has {need} for a task (the most CPUs: {most:g})")


def _submit(task, config: TextTo3DConfig, out: Path, cpus: int):
    """One job as a Ray task; its folder made absolute, as the worker's directory may differ."""
    options = task.options(num_cpus=cpus, num_gpus=_gpus(config))
    return options.remote(config, Path(out).absolute(), cpus)


def _task(config: TextTo3DConfig, out: Path, cpus: int) -> dict:
    """A job in a Ray worker: ``cpus`` torch threads, no progress bars."""
    torch.set_num_threads(cpus)
    return run_once(config, out, progress=False)


def _gather(ray, pending: dict, jobs, progress: bool) -> dict[int, Outcome]:
    """Each task's Outcome by job index, as they finish; Ctrl-C cancels the rest."""
    refs, outcomes = list(pending), {}
    with tqdm(total=len(refs), desc="sweep", disable=not progress) as bar:
        try:
            while refs:
                (ref,), refs = ray.wait(refs, num_returns=1)
                i = pending[ref]
                outcomes[i] = _outcome(ray, ref, *jobs[i])
                bar.update()
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref)
            raise
    return outcomes


def _outcome(ray, ref, config: TextTo3DConfig, out: Path) -> Outcome:
    from ray.exceptions import RayError, RayTaskError

    try:
        return Outcome(config, Path(out), ray.get(ref), None)
    except RayTaskError as err:  # the run raised: report its own exception
        return Outcome(config, Path(out), None, one_line(err.cause or err))
    except RayError as err:  # the worker died (out of memory, a lost node)
        return Outcome(config, Path(out), None, one_line(err))
