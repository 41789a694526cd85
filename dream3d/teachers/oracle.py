"""An exact, training-free teacher: the optimal denoiser of a finite bank of images per prompt.

For the empirical distribution of a bank {x_i}, the noised marginal is a mixture of
N(a_t x_i, s_t^2 I), whose posterior mean is
``D(x_t) = sum_i softmax_i(-|x_t - a_t x_i|^2 / (2 s_t^2)) x_i``
and whose eps-prediction is ``(x_t - a_t D(x_t)) / s_t`` (DESIGN.md section 3).
The caller builds the banks (ground-truth renders per caption); this module knows no world.
"""

from __future__ import annotations

import torch

from dream3d.diffusion import alphas_cumprod


class OracleTeacher:
    """Banks keyed by caption; ``""`` (unconditional) is the union of all banks."""

    fake_score = "unet"  # no weights to copy: IKL fits a small UNet from scratch

    def __init__(
        self,
        banks: dict[str, torch.Tensor],  # caption -> (N_i, C, H, W) images in [-1, 1]
        abar: torch.Tensor | None = None,  # (T,) schedule; DDPM linear if None
    ):
        if not banks:
            raise ValueError("the oracle teacher needs at least one non-empty bank")
        self.captions = list(banks)
        self.shape = next(iter(banks.values())).shape[1:]
        flat = [b.flatten(1).double() for b in banks.values()]
        self.images = torch.cat(flat)  # (M, D) every bank image, float64
        self.owner = torch.cat([torch.full((len(b),), i) for i, b in enumerate(flat)])  # (M,)
        self.sq_norms = self.images.pow(2).sum(1)  # (M,)
        self.alphas_cumprod = alphas_cumprod("linear") if abar is None else abar.double()

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Bank index per prompt; ``""`` is -1, every bank at once."""
        index = {c: i for i, c in enumerate(self.captions)}
        for p in prompts:
            if p and p not in index:
                shown = ", ".join(self.captions[:8]) + (" ..." if len(self.captions) > 8 else "")
                raise ValueError(f"the oracle has no bank for {p!r}; it has: {shown}")
        return torch.tensor([index[p] if p else -1 for p in prompts], dtype=torch.long)

    def logits(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None):
        """(B, M) log-weights -|x_t - a_t x_i|^2 / (2 s_t^2), -inf outside each prompt's bank.

        Distances use |x|^2 - 2 a x.x_i + a^2 |x_i|^2 in float64: one matmul, no (B, M, D) tensor.
        """
        x = x_t.flatten(1).double().cpu()
        ab = self.alphas_cumprod[t.cpu()][:, None]  # (B, 1)
        a, s2 = ab.sqrt(), 1 - ab
        d2 = x.pow(2).sum(1, keepdim=True) - 2 * a * (x @ self.images.T) + ab * self.sq_norms
        out = -d2.clamp_min(0) / (2 * s2)
        if cond is not None:
            keep = (self.owner[None, :] == cond.cpu()[:, None]) | (cond.cpu()[:, None] < 0)
            out = out.masked_fill(~keep, -torch.inf)
        return out

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """D(x_t): the posterior mean of x0, float64 (B, D)."""
        return torch.softmax(self.logits(x_t, t, cond), dim=1) @ self.images

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        """(x_t - a_t D(x_t)) / s_t, in x_t's dtype and device."""
        x = x_t.flatten(1).double().cpu()
        ab = self.alphas_cumprod[t.cpu()][:, None]
        eps = (x - ab.sqrt() * self.denoise(x_t, t, cond)) / (1 - ab).sqrt()
        return eps.to(x_t.dtype).to(x_t.device).reshape(x_t.shape)
