"""A pair run from the app's page against `dream3d compare`, side by side on this machine:
`python docs/app_speed.py OUT [--prompt P] [--steps N] [--browser webgl|nogl|none] [--repeat K]`.

First `dream3d compare --prompt P --seeds 1 --steps N` in a fresh process, then the same pair
from the app's page: the app in this process, headless Chromium (Debian's, through Selenium;
WebGL on, as a user's browser) typing the prompt and steps and pressing "Run both" (or, with
``--browser none``, gradio's client). Prints and writes OUT/app-speed.md: wall time, each
side's training seconds and seconds per step, and the CPU seconds each process group used
while the pair ran (this process: the app and its runs; chromium: the page). With
``--repeat K``, K such rounds one after the other (this machine's speed drifts over minutes:
each round's ratio compares two runs minutes apart), and the ratios' mean and range.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "dream3d"))

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of every process, grouped: chromium, this process, the others."""
    groups: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICK
        own = int(proc.name) == os.getpid()
        group = "this process" if own else "chromium" if "chrom" in name else "other"
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


def _sides(folder: Path) -> dict:
    sides = {}
    for g in ("sds", "ikl"):
        m = json.loads((folder / f"{g}-0" / "metrics.json").read_text())
        sides[g] = (m["train_seconds"], m["seconds_per_step"])
    return sides


def command_line(out: Path, prompt: str, steps: int) -> dict:
    args = [sys.executable, "-m", "dream3d.cli.main", "compare", "--prompt", prompt]
    args += ["--seeds", "1", "--steps", str(steps), "--out", str(out), "--quiet"]
    before, start = cpu_seconds(), time.perf_counter()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
    wall, after = time.perf_counter() - start, cpu_seconds()
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    cpu["the compare process"] = sum(
        getattr(ended, k) - getattr(children, k) for k in ("ru_utime", "ru_stime")
    )
    return {"wall": wall, "sides": _sides(out), "cpu": cpu}


def page(out: Path, prompt: str, steps: int, browser: str) -> dict:
    from test_app import _chromium, _free_port

    from dream3d.app import AppConfig, serve

    port = _free_port()
    server = serve(AppConfig(out=out), port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        if browser == "none":
            from gradio_client import Client

            client = Client(url, verbose=False)
            before, start = cpu_seconds(), time.perf_counter()
            args = (prompt, "tiny-camera", steps, 0, 20, 7.5, "standard")
            client.predict(*args, api_name="/run_both")
        else:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import WebDriverWait

            driver = _chromium(browser == "webgl")
            try:
                driver.get(url)
                until = WebDriverWait(driver, 3600, poll_frequency=0.5).until
                until(lambda d: d.find_element(By.CSS_SELECTOR, "#prompt textarea")).send_keys(
                    prompt
                )
                box = driver.find_element(By.CSS_SELECTOR, "#steps input")
                box.clear()
                box.send_keys(str(steps))
                time.sleep(2)
                before, start = cpu_seconds(), time.perf_counter()
                driver.find_element(By.ID, "run-both").click()
                until(lambda d: "IKL done" in d.find_element(By.ID, "status").text)
            finally:
                wall, after = time.perf_counter() - start, cpu_seconds()
                driver.quit()
    finally:
        server.close()
    if browser == "none":
        wall, after = time.perf_counter() - start, cpu_seconds()
    (folder,) = out.glob("compare-*")
    return {
        "wall": wall,
        "sides": _sides(folder),
        "cpu": {k: after.get(k, 0) - before.get(k, 0) for k in after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--prompt", default="a red chair")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--browser", choices=["webgl", "nogl", "none"], default="webgl")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, one after the other")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"`python docs/app_speed.py OUT --prompt '{args.prompt}' --steps {args.steps} "
        f"--browser {args.browser} --repeat {args.repeat}`, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} cores:",
        "",
        "| round | pair run | wall s | SDS train s (s/step) | IKL train s (s/step) | "
        "CPU s by process | page / command line |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for k in range(args.repeat):
        cli = command_line(args.out / f"compare-{k}", args.prompt, args.steps)
        app = page(args.out / f"app-{k}", args.prompt, args.steps, args.browser)
        ratios.append(app["wall"] / cli["wall"])
        runs = (("`dream3d compare --seeds 1`", cli, ""), (f"page ({args.browser})", app, "x"))
        for name, r, ratio in runs:
            (sds, sds_step), (ikl, ikl_step) = r["sides"]["sds"], r["sides"]["ikl"]
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpu"].items()) if v >= 0.5)
            lines.append(
                f"| {k + 1} | {name} | {r['wall']:.1f} | {sds:.1f} ({sds_step:.3f}) | "
                f"{ikl:.1f} ({ikl_step:.3f}) | {cpu} | {f'{ratios[-1]:.2f}x' if ratio else ''} |"
            )
        print(lines[-2], lines[-1], sep="\n", flush=True)
    lines += [
        "",
        f"page / command line, wall: mean {sum(ratios) / len(ratios):.2f}x "
        f"(rounds: {', '.join(f'{r:.2f}x' for r in ratios)})",
    ]
    text = "\n".join(lines) + "\n"
    (args.out / "app-speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
