"""An exact, training-free teacher: the optimal denoiser of a finite bank of images per prompt.

For the empirical distribution of a bank {x_i}, the noised marginal is a mixture of
N(a_t x_i, s_t^2 I), whose posterior mean is
``D(x_t) = sum_i softmax_i(-|x_t - a_t x_i|^2 / (2 s_t^2)) x_i``
and whose eps-prediction is ``(x_t - a_t D(x_t)) / s_t`` (DESIGN.md section 3).
The caller builds the banks (ground-truth renders per caption); this module knows no world.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dream3d.diffusion import alphas_cumprod


def caption_index(captions: list[str], prompts: list[str], who: str) -> torch.Tensor:
    """(B,) long: each prompt's index in ``captions``, -1 for ``""``; else a ValueError."""
    index = {c: i for i, c in enumerate(captions)}
    for p in prompts:
        if p and p not in index:
            shown = ", ".join(captions[:8]) + (" ..." if len(captions) > 8 else "")
            raise ValueError(f"{who} has no bank for {p!r}; it has: {shown}")
    return torch.tensor([index[p] if p else -1 for p in prompts], dtype=torch.long)


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
        return caption_index(self.captions, prompts, "the oracle")

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


class CameraOracle:
    """The oracle told the camera: for each sample, the optimal denoiser of a bank rendered from
    that sample's own camera (``bank(pose) -> (C, N, ch, H, W)``, one bank of N images in
    [-1, 1] per camera row of ``pose`` (C, POSE_DIM); the caller renders what the prompt
    allows: its objects, variants and colours in their canonical pose). It is the exact teacher
    of a world whose views agree, the bound a learned camera-conditioned teacher is held to.

    The text picks nothing more: the bank is already the prompt's, at this camera, so the
    conditional and the unconditional branch are the same denoiser and classifier-free guidance
    leaves it as it is. Banks of the last ``keep`` cameras are kept (DDIM reuses one camera).
    """

    fake_score = "unet"  # no weights to copy: IKL fits a small UNet from scratch
    reads_camera = True

    def __init__(
        self,
        captions: list[str],  # the captions it answers (its prompt's view captions)
        bank: Callable[[torch.Tensor], torch.Tensor],  # pose (C, P) -> (C, N, ch, H, W)
        abar: torch.Tensor | None = None,  # (T,) schedule; DDPM linear if None
        keep: int = 64,  # banks kept, by camera
    ):
        self.captions = list(captions)
        self.bank = bank
        self.alphas_cumprod = alphas_cumprod("linear") if abar is None else abar.double()
        self.keep = keep
        self._banks: dict[bytes, torch.Tensor] = {}  # camera row -> (N, D) float64

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Caption index per prompt (``""``: -1); an unknown caption is a ValueError."""
        return caption_index(self.captions, prompts, "the camera oracle")

    def banks(self, camera: torch.Tensor) -> torch.Tensor:
        """(B, N, D) float64: each sample's bank, rendered once per distinct camera."""
        rows = camera.detach().float().cpu().contiguous()
        keys = [r.numpy().tobytes() for r in rows]
        new = list(dict.fromkeys(k for k in keys if k not in self._banks))
        if new:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            made = self.bank(rows[[first[k] for k in new]])  # (C, N, ch, H, W)
            for k, images in zip(new, made):
                self._banks[k] = images.flatten(1).double()
            while len(self._banks) > max(self.keep, len(set(keys))):
                self._banks.pop(next(iter(self._banks)))
        return torch.stack([self._banks[k] for k in keys])

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """D(x_t) (B, D) float64: softmax_i(-|x_t - a_t x_i|^2 / 2 s_t^2) over the sample's bank."""
        x, images = x_t.flatten(1).double().cpu(), self.banks(camera)  # (B, D), (B, N, D)
        ab = self.alphas_cumprod[t.cpu()][:, None]  # (B, 1)
        dot = torch.einsum("bd,bnd->bn", x, images)
        d2 = x.pow(2).sum(1, keepdim=True) - 2 * ab.sqrt() * dot + ab * images.pow(2).sum(-1)
        weights = torch.softmax(-d2.clamp_min(0) / (2 * (1 - ab)), dim=1)  # (B, N)
        return torch.einsum("bn,bnd->bd", weights, images)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, camera=None) -> torch.Tensor:
        """(x_t - a_t D(x_t)) / s_t at each sample's camera, in x_t's dtype and device."""
        if camera is None:
            raise ValueError("the camera oracle needs each sample's camera")
        x = x_t.flatten(1).double().cpu()
        ab = self.alphas_cumprod[t.cpu()][:, None]
        eps = (x - ab.sqrt() * self.denoise(x_t, t, camera)) / (1 - ab).sqrt()
        return eps.to(x_t.dtype).to(x_t.device).reshape(x_t.shape)
