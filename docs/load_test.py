"""The app under load: `python docs/load_test.py OUT [--clients 10] [--queue 8] [--runs 20]`.

Serves the app in this process (concurrency 1, at most ``--queue`` requests waiting) on a
free port, then drives it with gradio's client, as users' pages do:

1. burst: ``--clients`` clients press "Run both" at once (the example prompts in turn). One
   cancels while it waits in the queue; one, a process of its own, is killed while its run
   trains (a closed laptop). Every request must end in its result, a "queue is full"
   refusal, or its own cancel or disconnect: none lost, none failed, and the slots of the
   cancelled and the killed free (the queue goes on).
2. soak: ``--runs`` runs one after another; the server's resident memory after each.

Writes OUT/load.md (docs/app-load.md is one) and OUT/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "dream3d"))

from test_app import _free_port  # noqa: E402

from dream3d.app import EXAMPLES, AppConfig, serve  # noqa: E402

ARGS = {"teacher": "tiny-camera", "seed": 0, "cfg_sds": 20, "cfg_ikl": 7.5, "outputs": "draft"}
DISCONNECT = """
import sys, time
from gradio_client import Client
job = Client(sys.argv[1], verbose=False).submit(*sys.argv[2:3], {args}, api_name="/run_both")
while True:
    time.sleep(1)
"""


def _memory() -> tuple[float, float]:
    """This process's resident memory now and at its peak, MB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))


def _values(prompt: str, steps: int) -> list:
    a = ARGS
    return [prompt, a["teacher"], steps, a["seed"], a["cfg_sds"], a["cfg_ikl"], a["outputs"]]


class Request:
    """One client's "Run both": its outcome, latency and the queue places it was told."""

    def __init__(self, url: str, prompt: str, steps: int, index: int):
        from gradio_client import Client

        self.index, self.prompt = index, prompt
        self.places: list[int] = []
        self.outcome, self.detail = "pending", ""
        self.start = time.perf_counter()
        self.first_update = self.end = None
        self.job = Client(url, verbose=False).submit(*_values(prompt, steps), api_name="/run_both")

    def watch(self, cancel_while_queued: bool = False) -> None:
        from gradio_client.utils import Status

        try:
            while not self.job.done():
                status = self.job.status()
                if status.code == Status.IN_QUEUE and status.rank is not None:
                    self.places.append(status.rank)
                    if cancel_while_queued and status.rank >= 1:
                        self.job.cancel()
                        self.outcome = "cancelled while waiting"
                        break
                if status.code == Status.ITERATING and self.first_update is None:
                    self.first_update = time.perf_counter() - self.start
                time.sleep(0.25)
            if self.outcome == "pending":
                result = self.job.result()
                status_line = result[0] if isinstance(result, (list, tuple)) else str(result)
                self.outcome, self.detail = "result", str(status_line)[:80]
        except Exception as err:  # the refusals and errors a user's page shows
            text = " ".join(str(err).split())
            self.outcome = "refused: busy" if "queue is full" in text.lower() else "error"
            self.detail = text[:120]
        self.end = time.perf_counter() - self.start


def burst(url: str, out: Path, clients: int, steps: int) -> dict:
    """Every client at once; one cancels in the queue, one disconnects while training."""
    started = time.perf_counter()
    killed_prompt = "a green mug"
    script = DISCONNECT.format(args=", ".join(map(repr, _values("", steps)[1:])))
    leaver = subprocess.Popen([sys.executable, "-c", script, url, killed_prompt])
    time.sleep(3)  # it holds the slot first
    requests = [Request(url, EXAMPLES[i % 5], steps, i) for i in range(clients - 1)]
    threads = [
        threading.Thread(target=r.watch, kwargs={"cancel_while_queued": r.index == clients - 2})
        for r in requests
    ]
    for t in threads:
        t.start()
    folder = None
    deadline = time.time() + 600
    while folder is None and time.time() < deadline:  # the leaver's run trains: kill it
        found = [p for p in out.glob("compare-a-green-mug-*") if (p / "sds-0").is_dir()]
        folder = found[0] if found else None
        time.sleep(0.5)
    time.sleep(2)
    os.kill(leaver.pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    leaver.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    rows = [
        {"client": r.index, "prompt": r.prompt, "outcome": r.outcome, "seconds": r.end,
         "first update": r.first_update, "queue places": sorted(set(r.places), reverse=True),
         "detail": r.detail}
        for r in requests
    ]  # fmt: skip
    leaver_done = folder is not None and (folder / "ikl-0" / "metrics.json").is_file()
    rows.append(
        {"client": clients - 1, "prompt": killed_prompt, "seconds": killed_at - started,
         "outcome": "disconnected while training" + (" (its run finished anyway)" if leaver_done
                                                      else " (its run stopped)"),
         "first update": None, "queue places": [], "detail": str(folder)}
    )  # fmt: skip
    return {"wall": wall, "rows": rows}


def soak(url: str, runs: int, steps: int) -> list[dict]:
    """``runs`` runs, one after another: each one's latency and the memory after it."""
    rows = []
    for i in range(runs):
        request = Request(url, EXAMPLES[i % len(EXAMPLES)], steps, i)
        request.watch()
        rss, peak = _memory()
        rows.append({"run": i + 1, "outcome": request.outcome, "seconds": request.end,
                     "rss MB": rss, "peak MB": peak})  # fmt: skip
    return rows


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def report(out: Path, args, b: dict, s: list[dict], start_mb: float) -> str:
    done = [r for r in b["rows"] if r["outcome"] == "result"]
    latency = [r["seconds"] for r in done]
    counts: dict[str, int] = {}
    for r in b["rows"]:
        key = r["outcome"].split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    lost = sum(v for k, v in counts.items() if k in ("error", "pending"))
    soak_s = [r["seconds"] for r in s if r["outcome"] == "result"]
    lines = [
        f"# The app under load — {time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU",
        "",
        f"`python docs/load_test.py OUT --clients {args.clients} --queue {args.queue} "
        f"--runs {args.runs} --steps {args.steps}`: the app (concurrency 1, queue "
        f'{args.queue}) with {args.clients} gradio clients pressing "Run both" at once '
        f"({args.steps} steps a run, draft outputs, the tiny-camera teacher), then "
        f"{args.runs} runs one after another.",
        "",
        "| clients | requests | completed | refused (busy) | cancelled | disconnected | lost | "
        "p50 latency | p95 latency | throughput | wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {args.clients} | {len(b['rows'])} | {counts.get('result', 0)} | "
        f"{counts.get('refused: busy', 0)} | {counts.get('cancelled while waiting', 0)} | "
        f"{counts.get('disconnected while training', 0)} | {lost} | "
        f"{_percentile(latency, 0.5):.1f} s | {_percentile(latency, 0.95):.1f} s | "
        f"{len(done) / b['wall'] * 60:.2f} runs/min | {b['wall']:.0f} s |",
        "",
        "Each request (latency from its submit to its last update; the places in the queue it "
        "was told, highest first):",
        "",
        "| client | prompt | outcome | seconds | first update s | queue places | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in b["rows"]:
        first = "–" if r["first update"] is None else f"{r['first update']:.1f}"
        lines.append(
            f"| {r['client']} | {r['prompt']} | {r['outcome']} | {r['seconds']:.1f} | {first} | "
            f"{r['queue places']} | {r['detail']} |"
        )
    rss = [r["rss MB"] for r in s]
    lines += [
        "",
        f"Soak: {len(s)} runs one after another, {len(soak_s)} completed, latency p50 "
        f"{_percentile(soak_s, 0.5):.1f} s, p95 {_percentile(soak_s, 0.95):.1f} s. The "
        f"server's resident memory (this process, MB) before the burst {start_mb:.0f}; after "
        f"each soak run: {', '.join(f'{x:.0f}' for x in rss)}; peak {s[-1]['peak MB']:.0f}.",
        f"Growth from soak run 5 to run {len(s)}: {rss[-1] - rss[min(4, len(rss) - 1)]:+.0f} MB.",
    ]
    text = "\n".join(lines) + "\n"
    (out / "load.md").write_text(text)
    (out / "load.json").write_text(json.dumps({"burst": b, "soak": s}, indent=1))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    preset = args.out / "preset.yaml"
    preset.write_text(yaml.safe_dump({"train": {"save_every": 10}}))
    port = _free_port()
    config = AppConfig(out=args.out / "app", preset=str(preset), queue=args.queue)
    page = serve(config, port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    start_mb = _memory()[0]
    try:
        b = burst(url, config.out, args.clients, args.steps)
        s = soak(url, args.runs, args.steps)
    finally:
        page.close()
    print(report(args.out, args, b, s, start_mb))


if __name__ == "__main__":
    main()
