"""Image generators for a diffusion teacher: a one-step network and Dirac images.

Both are text-conditioned through captions: a sample carries its captions in ``info``, and the
experiment turns them into the teacher's conditioning. They know the Teacher protocol only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from dream3d.diffusion import coefficients
from dream3d.train import Sample


@dataclass
class OneStepConfig:
    """The one-step generator G(z, caption) = x0_hat(s_init z, t_init; caption)."""

    name: ClassVar[str] = "onestep"
    # noise level of the input, as sigma = s_t / a_t (SiD's sigma_init = 2.5): t_init is the
    # teacher's timestep nearest it; at sigma_init the teacher's x0-prediction of a pure-noise
    # input is already a blurry, caption-coloured image that z varies
    sigma_init: float = 2.5

    def __post_init__(self):
        if not self.sigma_init > 0:
            raise ValueError(f"sigma_init must be > 0, got {self.sigma_init}")


def timestep_of_sigma(abar: torch.Tensor, sigma: float) -> int:
    """The integer t whose sigma_t = sqrt((1 - abar_t) / abar_t) is nearest ``sigma``."""
    sigmas = ((1 - abar) / abar).sqrt()
    return int((sigmas - sigma).abs().argmin())


class OneStepGenerator(nn.Module):
    """x0 = G(z, y) in one forward pass of a trainable copy of the teacher's network.

    Initialised as the teacher's x0-prediction at one noise level, G(z) = x0_hat(s_t z, t)
    with t = t_init (Zhou et al. 2024, SiD; Yin et al. 2024, DMD): training starts from a
    generator that already draws the caption's colours and rough shapes. A latent teacher's
    ``denoiser`` (its UNet) is copied alone, so G draws latents in the teacher's space.
    """

    def __init__(
        self,
        config: OneStepConfig,
        teacher,  # a network teacher (Teacher protocol and nn.Module)
        captions: list[str],  # what it learns to draw; sample() picks uniformly from them
        shape: tuple[int, ...],  # (C, H, W) of one sample in the teacher's space
        seed: int = 0,  # unused: the init is the teacher's
    ):
        super().__init__()
        if not isinstance(teacher, nn.Module):
            raise ValueError("the one-step generator needs a network teacher to copy")
        if not captions:
            raise ValueError("the one-step generator needs at least one caption")
        self.config = config
        self.net = copy.deepcopy(getattr(teacher, "denoiser", teacher)).float().requires_grad_()
        self.encode = teacher.encode_prompt  # the teacher's (frozen) text encoder
        self.captions, self.shape = list(captions), tuple(shape)
        self.abar = teacher.alphas_cumprod
        self.t_init = timestep_of_sigma(self.abar, self.config.sigma_init)
        self.in_teacher_space = hasattr(teacher, "denoiser")  # latents need no encoding

    def forward(self, z: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """x0 (B, C, H, W) for noise z (B, C, H, W) and one caption per row."""
        device = next(self.net.parameters()).device
        z = z.to(device)
        t = torch.full((len(z),), self.t_init, dtype=torch.long, device=device)
        cond = self.encode(captions).to(device)
        a, s = coefficients(self.abar, t, z)
        x_t = s * z
        return (x_t - s * self.net.eps(x_t, t, cond)) / a  # (B, C, H, W)

    def draw(self, captions: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """One sample per caption, z from ``generator`` (no graph)."""
        z = torch.randn(len(captions), *self.shape, generator=generator)
        with torch.no_grad():
            return self(z, captions)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        index = torch.randint(len(self.captions), (n,), generator=generator)
        captions = [self.captions[i] for i in index.tolist()]
        z = torch.randn(n, *self.shape, generator=generator)
        return Sample(self(z, captions), {"captions": captions, "z": z})


@dataclass
class DiracConfig:
    """N images as parameters, one per caption: a point mass each."""

    name: ClassVar[str] = "dirac"
    std: float = 0.1  # the images start as grey plus Gaussian noise of this std

    def __post_init__(self):
        if self.std < 0:
            raise ValueError(f"dirac std must be >= 0, got {self.std}")


class DiracImages(nn.Module):
    """N images optimised directly, one caption each (DreamFusion's 2-D case).

    ``sample(n)`` draws n of them without replacement (all N when n >= N).
    """

    def __init__(self, config: DiracConfig, teacher, captions: list[str], shape, seed: int = 0):
        super().__init__()
        if not captions:
            raise ValueError("Dirac images need at least one caption")
        g = torch.Generator().manual_seed(seed)
        self.config, self.captions, self.shape = config, list(captions), tuple(shape)
        self.x = nn.Parameter(config.std * torch.randn(len(captions), *shape, generator=g))
        self.in_teacher_space = False

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        index = torch.randperm(len(self.captions), generator=generator)[:n]
        captions = [self.captions[i] for i in index.tolist()]
        return Sample(self.x[index], {"captions": captions, "index": index})

    def draw(self, captions: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """The images themselves (N, C, H, W), detached: ``captions`` must be theirs."""
        if list(captions) != self.captions:
            raise ValueError("Dirac images draw only their own captions, in order")
        return self.x.detach().clone()
