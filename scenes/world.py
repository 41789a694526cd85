"""Draws labelled views of the toy world: the data teachers are trained on."""

from __future__ import annotations

import torch

from dream3d.cameras import CameraConfig, sample_cameras
from scenes.catalogue import COLOURS, SHAPES, caption
from scenes.render import render


def _check(names: list[str], known: dict, what: str) -> list[str]:
    """``names`` as a list, or a ValueError naming the unknown ones."""
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {unknown}; choose from: {', '.join(known)}")
    return list(names)


def sample_views(
    n: int,
    generator: torch.Generator | None = None,
    shapes: list[str] | None = None,  # allowed shape keys; all by default
    colours: list[str] | None = None,  # allowed colour names; all by default
    view: str | None = None,  # restrict cameras to one of dream3d.cameras.VIEWS
    size: int = 32,
    config: CameraConfig | None = None,  # the default camera distribution
    supersample: int = 2,
) -> dict:
    """n random views: images (n, 3, size, size), captions, shape, colour, view (lists), cameras.

    Shape and colour are drawn uniformly from the allowed lists, the camera from
    ``sample_cameras``; each caption uses its camera's own view bin.
    """
    config = CameraConfig() if config is None else config
    shapes = _check(list(SHAPES) if shapes is None else shapes, SHAPES, "shapes")
    colours = _check(list(COLOURS) if colours is None else colours, COLOURS, "colours")
    shape = [shapes[i] for i in torch.randint(len(shapes), (n,), generator=generator)]
    colour = [colours[i] for i in torch.randint(len(colours), (n,), generator=generator)]
    cameras = sample_cameras(n, generator, config, view)
    views = cameras.views(config)
    return {
        "images": render(shape, colour, cameras, size, supersample),  # (n, 3, size, size)
        "captions": [caption(s, c, v) for s, c, v in zip(shape, colour, views)],
        "shape": shape,
        "colour": colour,
        "view": views,
        "cameras": cameras,
    }
