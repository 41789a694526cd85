"""Score distillation sampling (Poole et al. 2022, DreamFusion, eq. 3)."""

from __future__ import annotations

from dream3d.guidance.base import Guidance, GuidanceConfig


class SDS(Guidance):
    """g = w(t) (eps_teacher_cfg(x_t) - eps): the noise that made x_t stands in for the fake score.

    That is IKL with the exact score of a point mass (Diff-Instruct, Corollary 3.4).
    """

    def __init__(self, teacher, config: GuidanceConfig | None = None, dim: int = 0, n_classes=0):
        super().__init__(teacher, config or GuidanceConfig())  # no fake score: dim unused

    def eps_fake(self, x_t, t, cond, x0, eps, pose=None):
        return eps
