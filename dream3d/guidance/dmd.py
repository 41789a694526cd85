"""Distribution Matching Distillation: DMD (Yin et al. 2023, arXiv 2311.18828) as DMD2 trains it
(Yin et al. 2024, arXiv 2405.14867), without its optional GAN term.

The generator's gradient is g = (x0_fake - x0_teacher) / mean|x - x0_teacher|, the x0
estimates of the fake and the (CFG) teacher at x_t, normalised per sample (DMD eq. 7-8). Since
x0_hat = (x_t - s_t eps_hat) / a_t, that is (s_t / a_t)(eps_teacher - eps_fake) / mean|x -
x0_teacher|: IKL's g under the ``dmd`` weighting (dream3d.diffusion.weight), which is why DMD is
IKL's class with DMD2's settings. DMD2's two time-scale rule is the fake's head start: 5 fake
updates per generator update (``fake_steps``). DMD2 dropped DMD's regression loss (it needs
noise-image pairs from the teacher's sampler); so does this module. t is drawn in [0.02, 0.98]
of T, DMD2's range (``t_range``, as every guidance here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dream3d.diffusion import Weighting
from dream3d.guidance.ikl import IKL, IKLConfig


@dataclass
class DMDConfig(IKLConfig):
    """IKLConfig with DMD2's defaults: the normalised x0-difference and 5 fake steps."""

    name: ClassVar[str] = "dmd"
    own: ClassVar[tuple[str, ...]] = ("weighting", "fake_steps")  # what the labs keep as is
    weighting: Weighting = "dmd"  # DMD's per-sample normalisation (any other: not DMD's g)
    fake_steps: int = 5  # DMD2's fake:generator update ratio


class DMD(IKL):
    """DMD2's distribution-matching gradient with its fake score fitted online (as IKL's)."""
