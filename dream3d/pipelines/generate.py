"""Instant 3D: NeRFs of a prompt from a trained triplane generator, one forward pass each.

    from dream3d.pipelines.generate import generate
    metrics = generate("outputs/distill-triplane-ikl-0/generator.safetensors", "a red chair",
                       n=4, out="outputs/generate")

Each of the n z's gets what a `dream3d run` writes of its NeRF (OUT/z-<k>/: views.png, the
turntable, mesh.glb/obj/ply, metrics.json with the scores against the truth); OUT/views.png
and the turntable show them together, and OUT/metrics.json holds their mean scores, how they
spread over the prompt's choices (colours, chair variants), and the time per object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dream3d.clock import Clock
from dream3d.pipelines.distill import load_generator
from dream3d.pipelines.outputs import combine, write_object
from dream3d.pipelines.text_to_3d import OutputsConfig
from dream3d.pipelines.world import WEIGHTS
from generators.nerf.amortised import TriplaneGenerator, held_out_prompts
from scenes.prompts import parse_prompt

# the shipped triplane generators (distilled by `dream3d distill --generator triplane`), by
# guidance; `generate` draws from the IKL one unless told another file
SHIPPED_TRIPLANE = {g: WEIGHTS / f"triplane-{g}-32.safetensors" for g in ("ikl", "sds")}


def load_triplane(weights: Path | str | None = None) -> TriplaneGenerator:
    """The triplane generator in a `dream3d distill --generator triplane` file (None: the
    shipped IKL one); a missing file or any other generator's is one ValueError line."""
    weights = Path(weights or SHIPPED_TRIPLANE["ikl"])
    if not weights.is_file():
        raise ValueError(
            f"no triplane generator at {weights}; train one: dream3d distill --generator "
            "triplane --out OUT, then --weights OUT/generator.safetensors"
        )
    parts, _ = load_generator(weights)
    if not isinstance(parts.generator, TriplaneGenerator):
        raise ValueError(
            f"{weights} holds an image generator, not a triplane generator of NeRFs "
            "(train one: dream3d distill --generator triplane; images: dream3d distill sample)"
        )
    return parts.generator


def generate(
    weights: Path | str | None,
    prompt: str,
    n: int = 4,
    out: Path | str = "outputs/generate",
    seed: int = 0,
    progress: bool = True,
    outputs: OutputsConfig | None = None,
) -> dict:
    """n objects of ``prompt`` (z from ``seed``) by the generator in ``weights`` (None: the
    shipped IKL one) written into ``out``; returns the metrics."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    spec = parse_prompt(prompt)  # a prompt outside the catalogue is a ValueError line
    generator = load_triplane(weights)
    outputs = outputs or OutputsConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z = generator.noise(n, torch.Generator().manual_seed(seed))
    generator.instance(spec.text, z[0])  # warm-up: the first call allocates
    clock, folders, truths, made = Clock(), [], [], []
    for k in tqdm(range(n), desc="objects", disable=not progress, leave=False):
        start = time.perf_counter()
        nerf = generator.instance(spec.text, z[k])
        made.append(time.perf_counter() - start)
        folder = out / f"z-{k}"
        folder.mkdir(exist_ok=True)
        scored = write_object(nerf, spec, outputs, folder, progress=False, clock=clock)
        (folder / "metrics.json").write_text(json.dumps(scored, indent=1) + "\n")
        folders.append(folder)
        truths.append(scored["truth"])
    metrics = {
        "prompt": prompt,
        "caption": spec.text,
        "held_out": spec.text in held_out_prompts(),
        "weights": str(weights or SHIPPED_TRIPLANE["ikl"]),
        "seed": seed,
        "n": n,
        "ms_per_object": round(1000 * sum(made) / n, 2),
        # views.png, the turntable and the mesh files; then the scores against the truth
        "seconds_per_object": {k: round(v / n, 3) for k, v in clock.seconds.items()},
        **combine(folders, truths, spec, out, "z"),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
