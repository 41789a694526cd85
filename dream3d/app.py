"""`dream3d app` / `python app.py`: SDS and IKL side by side in the browser (Gradio).

"Run both" is `dream3d compare` for one seed, through the same code (compare -> run), with a
CFG scale per guidance. Each run's views and loss/|g| curves update as it trains; then its
turntable, mesh (viewer and glb/obj/ply downloads) and ground-truth scores appear. Results
land in OUT/compare-<prompt-slug>-<seed>-<time>/, laid out as `dream3d compare` lays out its
folder. Runs wait in Gradio's queue, which shows each waiting user their place; at most
``concurrency`` train at once (1 by default on a CPU) and at most ``queue`` wait (16): the
next is told the app is busy.

The "Images" tab draws a prompt's samples from the one-step IKL and SDS image generators
(``dream3d distill``) next to the teacher's DDIM on the same noise (``distill.side_by_side``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dream3d.guidance import PAIR
from dream3d.pipelines.compare import COLUMNS
from dream3d.pipelines.world import TEACHERS, teacher_help

STEPS = (1, 5000)  # the steps a run may ask for
CFG_RANGE = (0.0, 200.0)
RESOLUTIONS = {  # output settings on top of the device's preset (render size is the teacher's)
    "draft": {
        "video_frames": 12,
        "video_size": 64,
        "video_samples": 16,
        "mesh": {"resolution": 48},
    },
    "standard": {},  # the preset's: 30 frames at 128 px, a 96^3 mesh grid
    "high": {
        "video_frames": 60,
        "video_size": 256,
        "video_samples": 64,
        "mesh": {"resolution": 160},
    },
}
PREVIEW_AZIMUTHS = (0.0, 90.0, 180.0, -90.0)  # the live views: front, side, back, other side
PREVIEW_EVERY = 25  # steps between live views, at least
CURVES_EVERY = 3.0  # seconds between redraws of the live curves, at least
# the live views and curves share the CPU with training: each waits at least this many times
# its own last drawing time, so together they take under ~10 % of it (at every 25 steps and
# every 3 s, "a red chair" trained 1.3-2x slower per step from the page than from the command
# line; without them, as fast: docs/robustness.md)
LIVE_SPACING = 20
# seconds between the page's updates, at least (each one costs the browser a redraw: at every
# step, "a red chair" trained ~1.3x slower from the page; docs/robustness.md)
UPDATE_EVERY = 1.0
EXAMPLES = ["a chair", "a red chair", "a blue cube", "a red sphere", "a table", "a green mug"]
TABLE = ("guidance", "seed", *COLUMNS, "train s", "wall s")  # the score table's columns
IMAGE_SAMPLES = (1, 32)  # the samples the Images tab may ask for
IMAGE_GRID = {"cols": 8, "scale": 3}  # its grids: 8 images a row, upscaled 3x (nearest)
IMAGE_DDIM = 50  # the teacher's DDIM steps of its reference column
INSTANT_OBJECTS = (1, 8)  # the objects (z's) the Instant 3D tab may ask for


@dataclass
class AppConfig:
    """How the app serves; `dream3d app --help` lists them."""

    out: Path = Path("outputs/app")  # every job's folder goes here
    preset: str | None = None  # run preset (scenes/presets name or .yaml); None: by device
    concurrency: int = 1  # runs training at once
    queue: int = 16  # requests waiting for a slot; more are refused: the app is busy
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    image_weights: dict | None = None  # Images tab: guidance -> generator file; None: shipped
    # Instant 3D tab: guidance -> triplane generator file; None: the shipped ones
    triplane_weights: dict | None = None


class Cancelled(Exception):
    """The page that started a run went away or pressed Stop."""


@dataclass
class Side:
    """What the page shows of one guidance's run."""

    history: list[dict] = field(default_factory=list)
    preview: np.ndarray | None = None  # (H, W, 3) uint8: the live views
    state: str = "waiting"  # waiting | training | writing | done
    out: Path | None = None
    metrics: dict | None = None
    wall: float = 0.0  # seconds from its start to its last file


def app_config(app: AppConfig, prompt: str, teacher: str, steps, seed, cfgs, resolution: str):
    """(run config, config per guidance) from the page's inputs (``cfgs``: a CFG scale per
    PAIR entry, in its order); a ValueError with a readable reason."""
    from dream3d.pipelines.compare import sides
    from dream3d.pipelines.text_to_3d import read_prompt, resolve

    read_prompt(prompt)  # empty or out-of-vocabulary prompts end here
    steps = _number("steps", steps, *STEPS, integer=True)
    seed = _number("seed", seed, 0, 2**31 - 1, integer=True)
    scales = [_number(f"{g.upper()} CFG scale", v, *CFG_RANGE) for g, v in zip(PAIR, cfgs)]
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; choose from {', '.join(RESOLUTIONS)}")
    overrides = {
        "teacher": teacher_source(teacher),
        "train": {"steps": steps, "seed": seed},
        "device": app.device,
        "outputs": RESOLUTIONS[resolution],
    }
    config = resolve(prompt, app.preset, overrides)
    guidances = {
        name: replace(side, cfg_scale=scale) for (name, side), scale in zip(sides().items(), scales)
    }
    return config, guidances


def teacher_source(choice: str) -> dict:
    """The teacher node of a menu choice: an embedded teacher's name, else a model of the first
    model-file teacher (TEACHERS) that has it on this machine."""
    if not choice or not str(choice).strip():
        raise ValueError(f"choose a teacher: {', '.join(TEACHERS)} or a model on this machine")
    if choice in TEACHERS and TEACHERS[choice][1].embedded:
        return {"name": choice}
    errors = []
    for name, (_, source) in TEACHERS.items():
        if not source.embedded:
            try:
                source.locate(choice)
                return {"name": name, "model": choice}
            except ValueError as err:
                errors.append(str(err))
    raise ValueError(errors[0] if errors else f"unknown teacher {choice!r}")


def teacher_choices() -> list[str]:
    """The embedded teachers, then the models on this machine of the others (TEACHERS)."""
    embedded = [n for n, (_, source) in TEACHERS.items() if source.embedded]
    models = [m for _, source in TEACHERS.values() if not source.embedded for m in source.cached()]
    return embedded + models


def _number(name: str, value, lo: float, hi: float, integer: bool = False):
    """``value`` as a number in [lo, hi], else a ValueError that says so."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not lo <= number <= hi:  # NaN and inf too
        got = f"{number:.10g}" if number is not None else repr(value)
        raise ValueError(f"{name} must be from {lo:.10g} to {hi:.10g}, got {got}")
    if integer and number != int(number):
        raise ValueError(f"{name} must be a whole number, got {number:.10g}")
    return int(number) if integer else number


def job_folder(root: Path, config, kind: str = "compare") -> Path:
    """A new folder root/<kind>-<slug>-<seed>-<time>[-n] of its own (``config``: anything
    with ``prompt`` and ``train.seed``)."""
    from dream3d.pipelines.text_to_3d import slug

    when = time.strftime("%Y%m%d-%H%M%S")
    stem = f"{kind}-{slug(config.prompt)}-{config.train.seed}-{when}"
    for n in range(1000):
        path = root / (stem if n == 0 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"cannot make a new folder in {root}")


class PairRun:
    """SDS then IKL on one seed (``dream3d compare``) in a thread of its own.

    The page polls it with ``wait``; ``stop`` ends training at the next logged step.
    ``slots`` bounds how many pair runs train at once, cancelled ones included.
    """

    def __init__(self, config, guidances: dict, out: Path, slots: threading.Semaphore):
        self.config, self.guidances, self.out, self.slots = config, guidances, out, slots
        self.sides = {g: Side() for g in guidances}
        self.stop = threading.Event()
        self.changed = threading.Condition()
        self.version = 0
        self.error: str | None = None
        self.done = False
        self.started = time.perf_counter()
        self._run_start = self.started
        self._next_preview = 0.0  # perf_counter time before which no live view is drawn
        self.thread = threading.Thread(target=self._main, name=f"dream3d {out.name}", daemon=True)

    def start(self) -> PairRun:
        self.thread.start()
        return self

    def _main(self) -> None:
        from dream3d.pipelines.compare import compare

        try:
            with self.slots:
                if self.stop.is_set():
                    raise Cancelled
                self._run_start = time.perf_counter()
                compare(
                    self.config,
                    [self.config.train.seed],
                    self.out,
                    progress=False,
                    guidances=self.guidances,
                    watch=self._watch,
                    on_run=self._on_run,
                )
        except Cancelled:
            self.error = "cancelled"
        except Exception as err:  # shown in this user's page; other runs go on
            self.error = (
                f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)
            )
        finally:
            self.done = True
            self._bump()

    def _watch(self, config, row: dict, generator) -> None:
        if self.stop.is_set():
            raise Cancelled
        side, last = self.sides[config.guidance.name], config.train.steps - 1
        side.state = "training" if row["step"] < last else "writing"
        side.history.append(row)
        due = row["step"] % PREVIEW_EVERY == 0 and time.perf_counter() >= self._next_preview
        if due or row["step"] == last:
            start = time.perf_counter()
            side.preview = preview(generator)
            self._next_preview = start + (1 + LIVE_SPACING) * (time.perf_counter() - start)
        self._bump()

    def _on_run(self, config, out: Path, metrics: dict) -> None:
        side = self.sides[config.guidance.name]
        side.state, side.out, side.metrics = "done", out, metrics
        side.wall = time.perf_counter() - self._run_start
        self._run_start = time.perf_counter()
        self._bump()

    def _bump(self) -> None:
        with self.changed:
            self.version += 1
            self.changed.notify_all()

    def wait(self, seen: int, timeout: float = 1.0) -> int:
        """The version after something changed since ``seen``, or after ``timeout`` seconds."""
        with self.changed:
            self.changed.wait_for(lambda: self.version != seen or self.done, timeout)
            return self.version

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or until the pair ends."""
        with self.changed:
            self.changed.wait_for(lambda: self.done, seconds)


def preview(generator, size: int = 64, samples: int = 32) -> np.ndarray:
    """The field's albedo from PREVIEW_AZIMUTHS, side by side: (size, 4 size, 3) uint8; for
    particles (a preset's ``particles``), a row per particle."""
    from dream3d.pipelines.outputs import orbit_cameras, render_views
    from dream3d.video import to_uint8

    cams = orbit_cameras(PREVIEW_AZIMUTHS)
    rows = []
    for nerf in getattr(generator, "nerfs", [generator]):
        rgb, _ = render_views(nerf, cams, size, samples)
        rows.append(np.concatenate(list(to_uint8(rgb)), axis=1))
    return np.concatenate(rows, axis=0)


def status_line(job: PairRun) -> str:
    """One line of where the pair stands: each side's step, speed and state."""
    parts = []
    for g, side in job.sides.items():
        if side.state == "training" and side.history:
            row = side.history[-1]
            per_step = row["time"] / (row["step"] + 1)
            left = per_step * (job.config.train.steps - row["step"] - 1)
            parts.append(
                f"**{g.upper()}** step {row['step'] + 1}/{job.config.train.steps}, "
                f"{per_step:.2f} s/step, about {left:.0f} s left"
            )
        else:
            parts.append(f"**{g.upper()}** {side.state}")
    return " · ".join(parts) + f" · {time.perf_counter() - job.started:.0f} s · `{job.out}`"


def score_rows(job: PairRun) -> list[list]:
    """The table: one row per finished run."""
    from dream3d.pipelines.compare import row_of

    rows = []
    for side in job.sides.values():
        if side.metrics is not None:
            row = row_of(side.metrics)
            rows.append([*row.values(), round(side.wall, 1)])
    return rows


def build_app(app: AppConfig):
    """The Gradio Blocks page: the "3D" tab (SDS vs IKL NeRFs) and the "Images" tab."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: offline first
    import gradio as gr

    with gr.Blocks(title="dream3d: SDS vs IKL") as page, gr.Tabs():
        with gr.Tab("3D", id="3d"):
            _tab_3d(gr, app)
        with gr.Tab("Images", id="images"):
            _tab_images(gr, app)
        with gr.Tab("Instant 3D", id="instant"):
            _tab_instant(gr, app)
    return page


def _tab_3d(gr, app: AppConfig) -> None:
    """SDS and IKL NeRFs on one prompt and seed: inputs, status, scores and both panes."""
    slots = threading.Semaphore(app.concurrency)
    gr.Markdown(
        "# dream3d: SDS vs IKL, same prompt, same seed\n"
        "A NeRF trained by score distillation (SDS, DreamFusion) next to one trained by "
        "integral KL (IKL, Diff-Instruct) on the same teacher, scored against the exact "
        "ground truth of the toy world."
    )
    inputs, go, stop = _inputs(gr, app)
    status = gr.Markdown("Ready.", elem_id="status")
    table = gr.Dataframe(
        headers=list(TABLE),
        label="ground-truth scores and wall time",
        elem_id="scores",
        interactive=False,
    )
    panes = {}
    with gr.Row():
        for g in PAIR:
            with gr.Column(elem_id=f"pane-{g}"):
                panes[g] = _pane(gr, g)
    outputs = [status, table] + [c for pane in panes.values() for c in pane.values()]

    def run_both(prompt, teacher, steps, seed, *scales_and_resolution):
        *scales, resolution = scales_and_resolution
        try:
            config, guidances = app_config(app, prompt, teacher, steps, seed, scales, resolution)
            out = job_folder(app.out, config)
        except (ValueError, TypeError) as err:
            raise gr.Error(str(err), print_exception=False) from None
        job = PairRun(config, guidances, out, slots).start()
        try:
            yield from _updates(gr, job, status, table, panes)
        finally:
            job.stop.set()  # the page went away or pressed Stop: training ends at its next row
        if job.error is not None:
            raise gr.Error(f"the run stopped: {job.error}", print_exception=False)

    event = gr.on(
        [go.click, inputs[0].submit], run_both, inputs, outputs, api_name="run_both",
        concurrency_limit=app.concurrency, show_progress_on=[status],
    )  # fmt: skip
    stop.click(None, cancels=[event], api_name=False)


def image_weights(app: AppConfig) -> dict:
    """The Images tab's one-step generators: guidance name -> .safetensors file."""
    from dream3d.pipelines.distill import SHIPPED

    return dict(app.image_weights or SHIPPED)


def image_columns(app: AppConfig) -> list[str]:
    """The Images tab's columns in side_by_side's order: each one-step generator, the teacher."""
    return [f"one-step {g.upper()}" for g in image_weights(app)] + [f"teacher DDIM {IMAGE_DDIM}"]


def sample_grids(app: AppConfig, prompt, n, seed) -> dict[str, tuple[np.ndarray, float]]:
    """The Images tab's click: column name -> (grid (H, W, 3) uint8, seconds), from
    ``side_by_side``; bad input is a one-line ValueError."""
    from dream3d.pipelines.distill import side_by_side
    from dream3d.pipelines.world import grid_array

    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty; try e.g. 'a red chair'")
    n = _number("samples", n, *IMAGE_SAMPLES, integer=True)
    seed = _number("seed", seed, 0, 2**31 - 1, integer=True)
    shown = side_by_side(prompt.strip(), n, seed, image_weights(app), ddim_steps=IMAGE_DDIM)
    return {name: (grid_array(x, **IMAGE_GRID), s) for name, (x, s) in shown.items()}


def _tab_images(gr, app: AppConfig) -> None:
    """One-step IKL and SDS generators next to the teacher's DDIM: same prompt, same z."""
    gr.Markdown(
        "# One-step generators: IKL vs SDS\n"
        "Image generators distilled from the tiny teacher in one step by integral KL (IKL, "
        f"Diff-Instruct) and by SDS, next to the teacher's own {IMAGE_DDIM}-step DDIM, "
        "on the same noise."
    )
    prompt, n, seed, go, status = _prompt_row(gr, "image", ("samples", 8, IMAGE_SAMPLES), "Sample")
    names = image_columns(app)
    with gr.Row():
        grids = [gr.Image(label=name, type="numpy", format="png") for name in names]

    def on_sample(prompt, n, seed):
        try:
            shown = sample_grids(app, prompt, n, seed)
        except ValueError as err:  # shown in this user's status; the app goes on serving
            return [" ".join(str(err).split())] + [gr.Image(None, label=m) for m in names]
        times = " · ".join(f"{name} {s:.2f} s" for name, (_, s) in shown.items())
        line = f"{n:.0f} samples of {prompt.strip()!r}, seed {seed:.0f}: {times}"
        images = [gr.Image(a, label=f"{name} — {s:.2f} s") for name, (a, s) in shown.items()]
        return [line, *images]

    triggers = [go.click, prompt.submit]
    gr.on(triggers, on_sample, [prompt, n, seed], [status, *grids], api_name="sample_images")


def triplane_weights(app: AppConfig) -> dict:
    """The Instant 3D tab's generators: guidance name -> triplane .safetensors file."""
    from dream3d.pipelines.generate import SHIPPED_TRIPLANE

    return dict(app.triplane_weights or SHIPPED_TRIPLANE)


def instant_objects(app: AppConfig, prompt, n, seed) -> dict[str, dict]:
    """The Instant 3D tab's click: guidance -> {"views": OUT/views.png, "mesh": the first
    object's mesh.glb, "metrics": generate's, "seconds"}, each guidance's n objects of the
    prompt (the same z's) written by ``generate`` into a new folder of app.out at the draft
    resolution; bad input is a one-line ValueError."""
    from types import SimpleNamespace

    from dream3d.config import from_dict
    from dream3d.pipelines.generate import generate
    from dream3d.pipelines.text_to_3d import OutputsConfig, read_prompt

    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty; try e.g. 'a red chair'")
    read_prompt(prompt.strip())
    n = _number("objects", n, *INSTANT_OBJECTS, integer=True)
    seed = _number("seed", seed, 0, 2**31 - 1, integer=True)
    job = SimpleNamespace(prompt=prompt.strip(), train=SimpleNamespace(seed=seed))
    root = job_folder(app.out, job, "instant")
    outputs = from_dict(OutputsConfig, RESOLUTIONS["draft"])
    shown = {}
    for g, weights in triplane_weights(app).items():
        start = time.perf_counter()
        metrics = generate(weights, prompt.strip(), n, root / g, seed, False, outputs)
        views, mesh = root / g / "views.png", root / g / "z-0" / "mesh.glb"
        shown[g] = {"views": views, "mesh": mesh, "metrics": metrics,
                    "seconds": time.perf_counter() - start}  # fmt: skip
    return shown


def _tab_instant(gr, app: AppConfig) -> None:
    """Triplane generators of NeRFs (instant 3D), IKL and SDS side by side: n objects each."""
    gr.Markdown(
        "# Instant 3D: one generator of NeRFs for every caption\n"
        "A network that maps (caption, z) to a NeRF in one pass, distilled by IKL and by SDS "
        "(`dream3d distill --generator triplane`): n z's of one prompt, their views, the "
        "first one's mesh, and how the n objects spread over the prompt's choices. 12 prompts "
        "(e.g. a red chair) were never seen in training."
    )
    prompt, n, seed, go, status = _prompt_row(
        gr, "instant", ("objects", 4, INSTANT_OBJECTS), "Generate"
    )
    names = list(triplane_weights(app))
    views, meshes = [], []
    with gr.Row():
        for g in names:
            with gr.Column():
                views.append(gr.Image(label=f"{g.upper()}: views", type="filepath"))
                meshes.append(gr.Model3D(label=f"{g.upper()}: the first object's mesh"))

    def on_generate(prompt, n, seed):
        try:
            shown = instant_objects(app, prompt, n, seed)
        except ValueError as err:  # shown in this user's status; the app goes on serving
            return [" ".join(str(err).split())] + [None] * (2 * len(names))
        parts = []
        for g, s in shown.items():
            d = s["metrics"]["distribution"] or {}
            ms = s["metrics"]["ms_per_object"]
            parts.append(f"{g.upper()} {ms:.0f} ms/object, {d.get('modes', 1)} modes")
        line = f"{n:.0f} objects of {prompt.strip()!r}, seed {seed:.0f}: " + " · ".join(parts)
        return (
            [line]
            + [str(s["views"]) for s in shown.values()]
            + [str(s["mesh"]) for s in shown.values()]
        )

    triggers = [go.click, prompt.submit]
    gr.on(triggers, on_generate, [prompt, n, seed], [status, *views, *meshes], api_name="instant")


def _prompt_row(gr, tab: str, count: tuple, button: str):
    """A tab's prompt, count (``count``: its name, default and (lo, hi)) and seed inputs, its
    button (elem_id: the button's word, lower case) and status line (elem_id <tab>-status)."""
    name, default, (lo, hi) = count
    with gr.Row():
        prompt = gr.Textbox("a chair", label="prompt", scale=3, elem_id=f"{tab}-prompt")
        n = gr.Number(default, precision=0, label=f"{name} ({lo}-{hi})")
        seed = gr.Number(0, precision=0, label="seed")
    go = gr.Button(button, variant="primary", elem_id=button.lower())
    status = gr.Markdown("Ready.", elem_id=f"{tab}-status")
    return prompt, n, seed, go, status


def _inputs(gr, app: AppConfig):
    """The page's inputs in run_both's order (prompt, teacher, steps, seed, a CFG scale per
    guidance, outputs), and the Run both and Stop buttons."""
    from dream3d.pipelines.compare import sides
    from dream3d.pipelines.text_to_3d import TextTo3DConfig, resolve

    default_steps = resolve("a chair", app.preset, {"device": app.device}).train.steps
    with gr.Row():
        prompt = gr.Textbox(
            label="prompt", placeholder="e.g. a red chair", scale=3, elem_id="prompt"
        )
        teacher = gr.Dropdown(
            teacher_choices(),
            value=TextTo3DConfig("a chair").teacher.name,  # dream3d run's default
            label="teacher",
            info=teacher_help() + " (a Hub id or folder on this machine)",
            allow_custom_value=True,
        )
        resolution = gr.Radio(
            list(RESOLUTIONS),
            value="standard",
            label="outputs",
            info="turntable and mesh resolution",
            elem_id="outputs",
        )
    gr.Examples(EXAMPLES, inputs=[prompt], label="catalogue prompts")
    with gr.Row():
        steps = gr.Number(
            default_steps, precision=0, label=f"steps ({STEPS[0]}-{STEPS[1]})", elem_id="steps"
        )
        seed = gr.Number(0, precision=0, label="seed")
        cfgs = [gr.Number(c.cfg_scale, label=f"{g.upper()} CFG scale") for g, c in sides().items()]
    with gr.Row():
        go = gr.Button("Run both", variant="primary", elem_id="run-both")
        stop = gr.Button("Stop", variant="stop")
    return [prompt, teacher, steps, seed, *cfgs, resolution], go, stop


def _pane(gr, guidance: str) -> dict:
    """One guidance's column: live views and curves, then video, mesh and downloads."""
    name = guidance.upper()
    gr.Markdown(f"## {name}")
    pane = {
        "live": gr.Image(label=f"{name}: views while training", type="numpy", height=160),
        "curves": gr.Image(label=f"{name}: loss and |g|", type="numpy", height=200),
        # plays once (looping, it cost the browser ~0.1 core, taken from the other side's
        # training; press play to see it again)
        "video": gr.Video(label=f"{name}: turntable", autoplay=True, height=280),
        "mesh": gr.Model3D(label=f"{name}: mesh", height=320),
    }
    with gr.Row():
        for ext in ("glb", "obj", "ply"):
            pane[ext] = gr.DownloadButton(f"{name} mesh.{ext}", visible=False, size="sm")
    return pane


def _updates(gr, job: PairRun, status, table, panes):
    """Yield the page's changes until the job ends: live views, curves, then files and scores,
    at most one update every UPDATE_EVERY seconds.

    The last update holds every output, so an API client's result is the whole page.
    """
    seen, shown, rows = -1, {g: {} for g in PAIR}, None
    while True:
        version = job.wait(seen)
        # a run's files go out a second before the pair's last update (a mesh viewer first
        # given its file in the last update stayed empty in Chromium)
        new = any(side.out is not None and "out" not in shown[g] for g, side in job.sides.items())
        final = job.done and not new
        update = {status: status_line(job)}
        if version != seen or final:
            seen = version
            for g, side in job.sides.items():
                update.update(_side_update(gr, panes[g], side, shown[g], final))
            if final or score_rows(job) != rows:  # the table only when a run has finished
                update[table] = rows = score_rows(job)
        yield update
        if final:
            return
        if job.done:  # its last files just went out: the last update waits a second
            time.sleep(UPDATE_EVERY)
        else:
            job.pause(UPDATE_EVERY)


def _side_update(gr, pane: dict, side: Side, shown: dict, everything: bool) -> dict:
    """What changed in one pane since ``shown`` (updated): new views, curves at most every
    CURVES_EVERY seconds and LIVE_SPACING times their drawing time (drawing them costs the
    training CPU), and the finished files."""
    from dream3d.pipelines.outputs import progress_image

    update = {}
    if side.preview is not None and (everything or shown.get("preview") is not side.preview):
        update[pane["live"]] = shown["preview"] = side.preview
    rows, due = len(side.history), shown.get("due", 0.0)
    fresh = rows != shown.get("rows") and time.perf_counter() >= due
    if rows and (everything or fresh or (side.out and rows != shown.get("rows"))):
        start = time.perf_counter()
        update[pane["curves"]] = progress_image(side.history)
        spent = time.perf_counter() - start
        shown["rows"], shown["due"] = rows, start + max(CURVES_EVERY, (1 + LIVE_SPACING) * spent)
    if side.out is not None and (everything or shown.get("out") is None):
        update.update(_finished(gr, pane, side.out))
        shown["out"] = side.out
    return update


def _finished(gr, pane: dict, out: Path) -> dict:
    """A finished run's video, mesh viewer and download buttons (of particles: particle 0's
    mesh; the video tiles them all)."""
    mesh = out if (out / "mesh.glb").is_file() else out / "particle-0"
    update = {pane["video"]: str(out / "turntable.mp4"), pane["mesh"]: str(mesh / "mesh.glb")}
    for ext in ("glb", "obj", "ply"):
        update[pane[ext]] = gr.DownloadButton(value=str(mesh / f"mesh.{ext}"), visible=True)
    return update


def check_address(host: str, port: int) -> None:
    """ValueError (one line) unless this machine can listen on host:port now: a host that
    does not resolve or is not this machine's, a port out of range or taken."""
    import socket

    if not 0 <= port <= 65535:
        raise ValueError(f"cannot serve on {host}:{port}: a TCP port is 1-65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
    except OSError as err:  # gaierror (no such host) included
        raise ValueError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None


def serve(
    app: AppConfig,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    block: bool = True,
):
    """Start the app; with ``block=False`` return the running Blocks (tests)."""
    check_address(host, port)
    app.out.mkdir(parents=True, exist_ok=True)
    page = build_app(app)
    page.queue(default_concurrency_limit=app.concurrency, max_size=app.queue)
    try:
        page.launch(
            server_name=host,
            server_port=port,
            share=share,
            allowed_paths=[str(app.out.resolve())],
            prevent_thread_lock=not block,
            quiet=not block,
        )
    except OSError as err:  # the port is taken, or the host is not this machine's
        raise ValueError(f"cannot serve on {host}:{port}: {err}") from None
    return page
