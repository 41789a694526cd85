"""`dream3d bench gpu`: what only a CUDA machine can show, in one command, written to one file.

1. the ``requires_cuda`` tests (pytest, from a checkout);
2. the parts of a step (bench_parts): guidance steps of the tiny teacher (32 px), an SD-1.5-
   shaped teacher (512 px renders, fp16) and an IF-I-XL-shaped one (64 px, fp16), each as SDS,
   IKL with a full copy and IKL with LoRA; the hash grid per backend; a 4096-ray render;
3. short `dream3d run --device cuda` runs of each guidance (bench_speed, a fresh process each)
   with the cuda preset and with the CPU defaults, the CPU defaults on this machine's CPU for
   the per-step ratio, and the GPU waits (syncs) a CUDA training step makes.

Every section runs even when another failed; a failure is a line of the report. The report
(markdown) goes to OUT (docs/gpu.md by default) with the date, the GPU and the versions.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import re
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from dream3d.pipelines import bench_parts as parts
from dream3d.pipelines.bench_speed import cell
from dream3d.pipelines.tables import markdown

SECTIONS = ("tests", "parts", "runs")
TESTS = Path(__file__).resolve().parents[2] / "tests"
PACKAGES = ("torch", "diffusers", "transformers", "nerfacc", "triton", "tinycudann")


def environment() -> dict:
    """Date, GPU, CUDA and the versions of the packages that decide the numbers."""
    env = {"date": datetime.date.today().isoformat(), "python": platform.python_version()}
    env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    env["cuda"] = torch.version.cuda or "none"
    for name in PACKAGES:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = "not installed"
    return env


def cuda_tests(tests: Path = TESTS) -> dict:
    """Run the requires_cuda tests; their closing line, exit code, seconds, and per failure
    its FAILED/ERROR line and where and why it failed (pytest's one-line tracebacks)."""
    if not tests.is_dir():
        return {"summary": f"no tests at {tests}: run from a checkout", "rc": None, "s": 0.0}
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-m", "requires_cuda", "-o", "addopts=", "-q", "-rfE"]
    done = subprocess.run(
        [*cmd, "--tb=line", str(tests)],
        cwd=tests.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    failures += [line for line in lines if re.match(r"\S+\.py:\d+: ", line)]  # --tb=line
    summary = lines[-1] if lines else done.stderr.strip()[-300:]
    s = time.perf_counter() - start
    return {"summary": summary, "rc": done.returncode, "s": s, "failures": failures}


def run_rows(out: Path, steps: int, cpu_steps: int, progress: bool) -> list[dict]:
    """`dream3d run` of each guidance, a fresh process each: the cuda preset and the CPU
    defaults on CUDA (``steps``), the CPU defaults on the CPU (``cpu_steps``). A run that
    fails is a row with its error."""
    from dream3d.pipelines.bench_speed import speed
    from dream3d.pipelines.compare import sides
    from dream3d.pipelines.text_to_3d import resolve

    runs = {
        "cuda preset": resolve("a chair", "cuda", {"device": "cuda", "train": {"steps": steps}}),
        "cpu defaults, cuda": resolve(
            "a chair", "cpu", {"device": "cuda", "train": {"steps": steps}}
        ),
        "cpu defaults, cpu": resolve("a chair", "cpu", {"train": {"steps": cpu_steps}}),
    }
    rows = []
    for label, config in runs.items():
        folder = out / label.replace(", ", "-").replace(" ", "-")
        try:
            rows += [{"run": label, **row} for row in speed(config, sides(), folder, progress)]
        except Exception as err:  # the other runs still count
            rows.append({"run": label, "error": parts.error_text(err)})
    return rows


def ratio_lines(rows: list[dict]) -> list[str]:
    """Per guidance, the CPU default's seconds per step over each CUDA run's."""
    by = {(r["run"], r["guidance"]): r["s_per_step"] for r in rows if "s_per_step" in r}
    lines = []
    for (run, guidance), s in by.items():
        cpu = by.get(("cpu defaults, cpu", guidance))
        if run != "cpu defaults, cpu" and cpu:
            lines.append(
                f"- {guidance}, {run}: {cpu / s:.1f}x faster per step than the CPU default"
            )
    return lines


def count_syncs(steps: int = 20) -> dict:
    """GPU waits of a CUDA `dream3d run` (cuda preset, IKL): torch's sync debug mode warns at
    each; their number per step and the three lines that make the most."""
    from dream3d.pipelines.text_to_3d import build, resolve
    from dream3d.train import train

    config = resolve("a chair", "cuda", {"device": "cuda"})
    _, _, generator, guidance, cond_fn = build(config)
    train_config = replace(config.train, steps=steps, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train(generator, guidance, train_config, cond_fn=cond_fn)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    where = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
    return {"per_step": len(syncs) / steps, "top": where.most_common(3)}


def report(
    out: Path,
    sections=SECTIONS,
    steps: int = 300,
    cpu_steps: int = 40,
    progress: bool = True,
    work: Path = Path("outputs/bench-gpu"),
) -> str:
    """Run the sections on this machine's GPU and write the markdown report to ``out``."""
    env = environment()
    lines = [f"# dream3d on a GPU: {env['gpu']}", ""]
    lines += [f"Measured by `dream3d bench gpu` on {env['date']}. Versions:", ""]
    lines += [", ".join(f"{k} {v}" for k, v in env.items() if k not in ("date", "gpu")), ""]
    for name, section in (("tests", _tests), ("parts", _parts), ("runs", _runs)):
        if name in sections:
            try:
                lines += section(work=work, steps=steps, cpu_steps=cpu_steps, progress=progress)
            except Exception as err:  # the other sections' numbers still count
                lines += [f"## {name}", "", f"failed: {parts.error_text(err)}", ""]
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def _tests(**_) -> list[str]:
    result = cuda_tests()
    lines = ["## The requires_cuda tests", ""]
    lines += [f"`pytest -m requires_cuda`: {result['summary']} ({result['s']:.0f} s)", ""]
    return lines + [f"- {line}" for line in result.get("failures", [])] + [""]


def _parts(**_) -> list[str]:
    return parts.parts_markdown(parts.part_rows())


def _runs(work: Path, steps: int, cpu_steps: int, progress: bool, **_) -> list[str]:
    rows = run_rows(work, steps, cpu_steps, progress)
    keys = ("run", "guidance", "steps", "s_per_step", "train s", "outputs s", "wall s", "peak MiB")
    keys += ("error",) * any("error" in r for r in rows)
    lines = ["## `dream3d run`, a fresh process each", ""]
    lines += markdown([{k: r.get(k, "") for k in keys} for r in rows], cell) + [""]
    lines += ratio_lines(rows) + [""]
    try:
        syncs = count_syncs()
    except Exception as err:
        return lines + [f"GPU waits per training step: failed: {parts.error_text(err)}", ""]
    lines += [f"GPU waits per training step (IKL, cuda preset): {syncs['per_step']:.2f}; most at"]
    return lines + [f"- {where}: {n}" for where, n in syncs["top"]] + [""]
