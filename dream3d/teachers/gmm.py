"""An exact teacher: a Gaussian mixture in R^d, whose noised marginals stay Gaussian mixtures.

Under ``x_t = a_t x0 + s_t eps`` a component N(mu, sigma^2 I) becomes N(a_t mu, (a_t^2 sigma^2 +
s_t^2) I), so the score, and with it the eps-prediction ``eps = -s_t * score``, is exact at
every t. Components may carry class labels, so classifier-free guidance can be exercised.
"""

from __future__ import annotations

import math

import torch

from dream3d.diffusion import alphas_cumprod, check_choice

PRESETS = ("ring8", "grid25", "thin-ring")


class GMMTeacher:
    """Isotropic Gaussian mixture; class ``c`` of the prompt keeps only components labelled c."""

    def __init__(
        self,
        means: torch.Tensor,  # (K, d) component centres
        stds: torch.Tensor,  # (K,) isotropic standard deviations
        weights: torch.Tensor | None = None,  # (K,) mixture weights, uniform if None
        labels: torch.Tensor | None = None,  # (K,) class index of each component
        names: list[str] | None = None,  # prompt text of each class
        abar: torch.Tensor | None = None,  # (T,) schedule; SD's scaled-linear if None
    ):
        k = means.shape[0]
        self.means = means.double()
        self.stds = stds.double().expand(k).clone()
        w = torch.ones(k, dtype=torch.float64) if weights is None else weights.double()
        self.log_weights = (w / w.sum()).log()
        self.labels = torch.zeros(k, dtype=torch.long) if labels is None else labels.long()
        n_classes = int(self.labels.max()) + 1
        self.names = names or [f"class {c}" for c in range(n_classes)]
        self.alphas_cumprod = alphas_cumprod() if abar is None else abar.double()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """Class index per prompt; ``""`` is the unconditional class -1."""
        index = {name: i for i, name in enumerate(self.names)}
        for p in prompts:
            if p and p not in index:
                raise ValueError(f"unknown prompt {p!r}; choose one of: {', '.join(self.names)}")
        return torch.tensor([index[p] if p else -1 for p in prompts], dtype=torch.long)

    def _component_logits(self, x, a, s, cond):
        """Per-component log-density terms at noise level (a, s): returns (logits, diff, var)."""
        var = a**2 * self.stds**2 + s**2  # (B, K)
        diff = x[:, None, :] - a[..., None] * self.means  # (B, K, d)
        logits = (
            self.log_weights
            - 0.5 * self.dim * torch.log(2 * math.pi * var)
            - 0.5 * diff.pow(2).sum(-1) / var
        )
        if cond is not None:
            logits = logits.masked_fill(~self._keep(cond), -math.inf)
        return logits, diff, var

    def _keep(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, K) mask of the components each prompt's class allows (-1 allows all)."""
        return (self.labels[None, :] == cond[:, None]) | (cond[:, None] < 0)

    def _noise(self, t, n):
        if t is None:
            zeros = torch.zeros(n, 1, dtype=torch.float64)
            return zeros + 1.0, zeros
        ab = self.alphas_cumprod[t.cpu()][:, None]
        return ab.sqrt(), (1 - ab).sqrt()

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        """Exact eps = s_t * sum_k r_k (x_t - a_t mu_k) / var_k, computed in float64."""
        x = x_t.flatten(1).double().cpu()
        a, s = self._noise(t, x.shape[0])
        logits, diff, var = self._component_logits(x, a, s, None if cond is None else cond.cpu())
        r = torch.softmax(logits, dim=1)  # (B, K) posterior over components
        eps = s * (r[..., None] * diff / var[..., None]).sum(1)
        return eps.to(x_t.dtype).to(x_t.device).reshape(x_t.shape)

    def log_prob(self, x: torch.Tensor, t: torch.Tensor | None = None, cond=None):
        """log q_t(x) of the noised marginal (t=None: the clean mixture), float64 (B,).

        With ``cond`` the mixture is the class's components, weights renormalised.
        """
        x = x.flatten(1).double()
        a, s = self._noise(t, x.shape[0])
        logits, _, _ = self._component_logits(x, a, s, cond)
        if cond is not None:
            keep = self._keep(cond)
            norm = torch.logsumexp(self.log_weights.masked_fill(~keep, -math.inf), 1)
            return torch.logsumexp(logits, dim=1) - norm
        return torch.logsumexp(logits, dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None, cond=None):
        """n exact samples (float32); ``cond`` (n,) restricts each to its class."""
        logits = self.log_weights.expand(n, -1)
        if cond is not None:
            logits = logits.masked_fill(~self._keep(cond), -math.inf)
        k = torch.multinomial(logits.softmax(1), 1, generator=generator)[:, 0]
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.means[k] + self.stds[k, None] * z).float()


def gmm_preset(name: str) -> GMMTeacher:
    """Named mixtures used by the labs.

    - ``ring8``: 8 modes of std 0.2 on a circle of radius 2 (7.7 std apart), a class each.
    - ``grid25``: 5x5 modes of std 0.1 spaced 1 apart, one class per row.
    - ``thin-ring``: 256 near-degenerate components (std 1e-3) on a circle of radius 2:
      a thin set, as a data manifold is.
    """
    check_choice("gmm teacher", name, PRESETS)
    if name == "ring8":
        ang = torch.arange(8) * (2 * math.pi / 8)
        means = 2.0 * torch.stack([ang.cos(), ang.sin()], 1)
        names = [f"mode {k}" for k in range(8)]
        return GMMTeacher(means, torch.tensor(0.2), labels=torch.arange(8), names=names)
    if name == "grid25":
        g = torch.arange(5, dtype=torch.float64) - 2.0
        means = torch.cartesian_prod(g, g)
        labels = torch.arange(25) // 5
        return GMMTeacher(
            means, torch.tensor(0.1), labels=labels, names=[f"row {r}" for r in range(5)]
        )
    ang = torch.arange(256) * (2 * math.pi / 256)
    return GMMTeacher(2.0 * torch.stack([ang.cos(), ang.sin()], 1), torch.tensor(1e-3))
