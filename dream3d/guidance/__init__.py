"""Guidance losses, one registry entry each: ``GUIDANCES[name] = (class, config class)``.

Adding a guidance is one module (a ``Guidance`` subclass and, if it has settings of its own,
a ``GuidanceConfig`` subclass naming itself in ``name``) plus one entry here; the CLI's
choices, the app's columns, compare's and bench's sides are read from this dict.
"""

from __future__ import annotations

from dataclasses import fields

from dream3d.config import from_dict
from dream3d.diffusion import check_choice
from dream3d.guidance.base import Guidance, GuidanceConfig, inject
from dream3d.guidance.dmd import DMD, DMDConfig
from dream3d.guidance.fake_scores import FAKE_SCORES
from dream3d.guidance.ikl import IKL, IKLConfig
from dream3d.guidance.sds import SDS
from dream3d.guidance.sid import SiD, SiDConfig

GUIDANCES = {
    "sds": (SDS, GuidanceConfig),
    "ikl": (IKL, IKLConfig),
    "sid": (SiD, SiDConfig),
    "dmd": (DMD, DMDConfig),
}
# the pair compare, bench quality and speed and the app run unless told others (--guidance)
PAIR = ("sds", "ikl")


def build_guidance(config: GuidanceConfig, teacher, dim: int = 0, n_classes: int = 0) -> Guidance:
    """The guidance ``config`` configures (by its ``name``), on ``teacher``."""
    return GUIDANCES[config.name][0](teacher, config, dim=dim, n_classes=n_classes)


def guidance_config(name: str, **options) -> GuidanceConfig:
    """Config of guidance ``name`` from options; ``None`` keeps a default, and options that
    only other guidances have (say ``fake_steps`` for SDS) are left out, so one set of
    options configures every side of a comparison."""
    check_choice("guidance", name, tuple(GUIDANCES))
    known = {f.name for _, c in GUIDANCES.values() for f in fields(c)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown guidance options: {', '.join(unknown)}")
    config_cls = GUIDANCES[name][1]
    own = {f.name for f in fields(config_cls)}
    kept = {k: v for k, v in options.items() if v is not None and k in own}
    return from_dict(config_cls, kept, "guidance")  # types checked as in the config tree


def make_guidance(name: str, teacher, dim: int = 0, n_classes: int = 0, **options) -> Guidance:
    """``build_guidance(guidance_config(name, **options), teacher, dim, n_classes)``."""
    return build_guidance(guidance_config(name, **options), teacher, dim, n_classes)


__all__ = [
    "DMD",
    "FAKE_SCORES",
    "GUIDANCES",
    "IKL",
    "PAIR",
    "SDS",
    "DMDConfig",
    "Guidance",
    "GuidanceConfig",
    "IKLConfig",
    "SiD",
    "SiDConfig",
    "build_guidance",
    "guidance_config",
    "inject",
    "make_guidance",
]
