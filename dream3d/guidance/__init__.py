"""Guidance losses by name: ``make_guidance("sds" | "ikl", teacher, **options)``."""

from __future__ import annotations

from dataclasses import fields

from dream3d.diffusion import check_choice
from dream3d.guidance.base import Guidance, GuidanceConfig, inject
from dream3d.guidance.ikl import IKL, IKLConfig
from dream3d.guidance.sds import SDS

GUIDANCES = {"sds": (SDS, GuidanceConfig), "ikl": (IKL, IKLConfig)}


def make_guidance(name: str, teacher, dim: int = 0, n_classes: int = 0, **options) -> Guidance:
    """Build a guidance from config fields; ``None`` keeps a default, and options that only
    the other guidance has (say ``fake_steps`` for SDS) are left out, so one set of options
    can build both sides of a comparison."""
    check_choice("guidance", name, tuple(GUIDANCES))
    cls, config_cls = GUIDANCES[name]
    known = {f.name for c in (GuidanceConfig, IKLConfig) for f in fields(c)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown guidance options: {', '.join(unknown)}")
    own = {f.name for f in fields(config_cls)}
    config = config_cls(**{k: v for k, v in options.items() if v is not None and k in own})
    if name == "ikl":
        return cls(teacher, config, dim=dim, n_classes=n_classes)
    return cls(teacher, config)


__all__ = [
    "GUIDANCES",
    "IKL",
    "SDS",
    "Guidance",
    "GuidanceConfig",
    "IKLConfig",
    "inject",
    "make_guidance",
]
