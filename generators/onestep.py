"""One-step generators z -> x: an MLP for low-dimensional data, optionally class-conditioned."""

from __future__ import annotations

import torch
from torch import nn

from dream3d.nn import mlp
from dream3d.train import Sample


class MLPGenerator(nn.Module):
    """x = f(z[, class]) with z ~ N(0, I); class labels are drawn uniformly when n_classes > 0."""

    def __init__(
        self,
        dim: int,  # output dimension
        z_dim: int = 8,  # latent dimension
        hidden: int = 128,  # MLP width
        layers: int = 3,  # hidden layers
        n_classes: int = 0,  # 0: unconditional
        offset: tuple[float, ...] | None = None,  # initial centre of the output (far starts)
        init_scale: float = 1.0,  # scales the last layer at init: the initial spread
    ):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.classes = nn.Embedding(n_classes, 16) if n_classes else None
        self.net = mlp(z_dim + (16 if n_classes else 0), dim, hidden, layers)
        last = self.net[-1]
        with torch.no_grad():
            last.weight.mul_(init_scale)
            last.bias.mul_(init_scale)
            if offset is not None:
                last.bias.add_(torch.tensor(offset, dtype=last.bias.dtype))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        z = torch.randn(n, self.z_dim, generator=generator)
        info: dict = {"z": z}
        h = z
        if self.classes is not None:
            label = torch.randint(0, self.n_classes, (n,), generator=generator)
            info["label"] = label
            h = torch.cat([z, self.classes(label)], 1)
        return Sample(self.net(h), info)
