"""The NeRF field: a multiresolution hash grid, a small MLP, density and albedo.

Points live in world space; the field covers the box ``[-bound, bound]^3`` (the toy world's
objects sit inside the unit ball, so ``bound = 1``) and is empty outside it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dream3d.config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, check_ranges
from dream3d.diffusion import check_choice
from dream3d.nn import seeded

GridBackend = Literal["auto", "torch", "tcnn", "triton"]
NormalMode = Literal["autograd", "finite"]
Activation = Literal["softplus", "exp"]
ACTIVATIONS = ("softplus", "exp")

PRIMES = (1, 2654435761, 805459861)  # Instant-NGP's spatial hash, one prime per axis


@dataclass(frozen=True)
class HashGridConfig:
    """Multiresolution hash encoding (Müller et al. 2022, Instant-NGP)."""

    # the CPU field: 6 levels from 16 to 128 cells (a 32-pixel view's pixel is ~1/16 of the
    # box); 8 levels up to 256 cost 25 % more per render and added only detail no view sees
    levels: int = 6  # L, resolution levels
    features: int = 2  # F, features per level
    log2_table: int = 14  # log2 T, entries in each level's table
    base_resolution: int = 16  # N_min, cells per axis of the coarsest level
    max_resolution: int = 128  # N_max, cells per axis of the finest level
    init_scale: float = 1e-4  # table entries start uniform in [-init_scale, init_scale]
    backend: GridBackend = "auto"  # on CUDA tcnn, else triton, where importable; else torch

    def __post_init__(self):
        sizes = ("levels", "features", "log2_table", "base_resolution", "max_resolution")
        check_ranges(self, dict.fromkeys(sizes, AT_LEAST_1) | {"init_scale": NON_NEGATIVE})
        if self.base_resolution > self.max_resolution:
            raise ValueError(
                f"resolutions: base {self.base_resolution} is above max {self.max_resolution}"
            )

    @property
    def growth(self) -> float:
        """Per-level scale b = exp((ln N_max - ln N_min) / (L - 1)) (Instant-NGP eq. 3)."""
        if self.levels == 1:
            return 1.0
        return math.exp(math.log(self.max_resolution / self.base_resolution) / (self.levels - 1))

    def resolution(self, level: int) -> int:
        """Cells per axis N_l = floor(N_min * b^l) (Instant-NGP eq. 2)."""
        return math.floor(self.base_resolution * self.growth**level + 1e-6)


class HashGrid(nn.Module):
    """Pure-PyTorch hash encoding: points (N, 3) in [0, 1]^3 -> features (N, L * F).

    Level l scales x by N_l and trilinearly interpolates the features stored at the 8 corners
    of the cell around it. A level whose (N_l + 1)^3 vertices fit in its table is indexed
    densely, i + j (N_l + 1) + k (N_l + 1)^2, so without collisions; finer levels hash
    (i * p_1 xor j * p_2 xor k * p_3) mod T with Instant-NGP's primes (eq. 4).
    """

    def __init__(self, config: HashGridConfig = HashGridConfig()):
        super().__init__()
        self.config = config
        size = (config.levels, 2**config.log2_table, config.features)
        self.table = nn.Parameter((torch.rand(size) * 2 - 1) * config.init_scale)  # (L, T, F)
        self.resolutions = [config.resolution(level) for level in range(config.levels)]
        self.out_dim = config.levels * config.features

    def dense(self, level: int) -> bool:
        """Whether every vertex of ``level`` gets its own table entry."""
        return (self.resolutions[level] + 1) ** 3 <= self.table.shape[1]

    def index(self, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor, level: int) -> torch.Tensor:
        """Table rows of integer vertices (i, j, k) (broadcastable long tensors) at ``level``."""
        if self.dense(level):
            side = self.resolutions[level] + 1
            return i + side * (j + side * k)
        mask = self.table.shape[1] - 1  # T is a power of two: mod T is a bit mask
        return (i * PRIMES[0] ^ j * PRIMES[1] ^ k * PRIMES[2]) & mask

    def corners(self, x: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Table rows (N, 8) of the cell corners around points (N, 3) in [0, 1]^3 at ``level``,
        and their trilinear weights (N, 8), prod_axis (frac or 1 - frac); they sum to 1."""
        n = self.resolutions[level]
        pos = x * n  # (N, 3) in cell units
        cell = pos.detach().floor().clamp(0, n - 1)  # x = 1 falls in the last cell
        frac = pos - cell  # (N, 3) in [0, 1]
        cell = cell.long()
        corner = torch.stack([cell, cell + 1], -1)  # (N, 3, 2): axis, low/high vertex
        weight = torch.stack([1 - frac, frac], -1)  # (N, 3, 2)
        i, j, k = corner[:, 0, :, None, None], corner[:, 1, None, :, None], corner[:, 2, None, None]
        w = weight[:, 0, :, None, None] * weight[:, 1, None, :, None] * weight[:, 2, None, None]
        return self.index(i, j, k, level).reshape(-1, 8), w.reshape(-1, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, L * F) of points (N, 3) in [0, 1]^3, levels coarse to fine."""
        levels, size, features = self.table.shape
        rows, weights = zip(*(self.corners(x, level) for level in range(levels)))
        shift = torch.arange(levels, device=x.device)[:, None] * size  # level l's rows start at lT
        rows = torch.stack(rows, 1) + shift  # (N, L, 8) rows of the flat (L T, F) table
        feats = self.table.view(-1, features).index_select(0, rows.view(-1))  # one gather
        feats = feats.view(-1, 8, features)  # (N L, 8, F)
        w = torch.stack(weights, 1).view(-1, 1, 8)  # (N L, 1, 8)
        out = torch.bmm(w, feats)  # (N L, 1, F): sum_c w_c feats_c
        return out.view(x.shape[0], levels * features)  # (N, L F); N = 0 too


class TcnnHashGrid(nn.Module):
    """tiny-cuda-nn's fused hash grid with the same hyperparameters (CUDA only).

    tcnn places its vertices half a cell differently, so values differ from ``HashGrid``'s
    for the same table; the two are interchangeable, not identical.
    """

    def __init__(self, config: HashGridConfig, seed: int = 0):
        super().__init__()
        import tinycudann as tcnn

        self.encoding = tcnn.Encoding(
            3,
            {
                "otype": "HashGrid",
                "n_levels": config.levels,
                "n_features_per_level": config.features,
                "log2_hashmap_size": config.log2_table,
                "base_resolution": config.base_resolution,
                "per_level_scale": config.growth,
            },
            seed=seed,
        )
        self.out_dim = config.levels * config.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, L * F) of points (N, 3) in [0, 1]^3, as float32."""
        return self.encoding(x).float()


class TritonHashGrid(HashGrid):
    """``HashGrid`` whose forward runs the fused Triton kernels of ``hashgrid_triton``.

    Same table, vertices and values as ``HashGrid`` (state_dicts load across the two). The
    fused kernels differentiate in the table only, so where the points require grad (autograd
    normals differentiate the density in the points, with create_graph: a double backward)
    the forward falls back to ``HashGrid.forward``; deferred shading asks normals at <= 1
    point per ray, so the fallback stays cheap.
    """

    def __init__(self, config: HashGridConfig = HashGridConfig()):
        super().__init__(config)
        dense = [self.dense(level) for level in range(config.levels)]
        levels = torch.tensor(self.resolutions, dtype=torch.int32)  # (L,) N_l
        self.register_buffer("level_cells", levels, persistent=False)
        self.register_buffer(
            "level_dense", torch.tensor(dense, dtype=torch.int32), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, L * F) of points (N, 3) in [0, 1]^3: fused unless x requires grad."""
        if x.requires_grad and torch.is_grad_enabled():
            return super().forward(x)
        from generators.nerf.hashgrid_triton import triton_hash_encode

        return triton_hash_encode(x, self.table, self.level_cells, self.level_dense)


def _tcnn_available() -> bool:
    """Whether tinycudann imports."""
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return True


def _triton_available() -> bool:
    """Whether triton imports (``hashgrid_triton`` is imported here, lazily: see its doc)."""
    from generators.nerf.hashgrid_triton import triton_available

    return triton_available()


def grid_backend(
    backend: GridBackend, device: torch.device | str
) -> Literal["torch", "tcnn", "triton"]:
    """The backend to build. "auto": on CUDA tcnn, else triton, where importable, else torch;
    torch on the CPU. "tcnn" needs CUDA; "triton" needs CUDA or TRITON_INTERPRET=1."""
    cuda = torch.device(device).type == "cuda"
    if backend == "torch" or (backend == "auto" and not cuda):
        return "torch"
    if backend == "tcnn" and not cuda:
        raise ValueError("the tcnn hash grid needs a CUDA device")
    if backend == "triton" and not cuda and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise ValueError("the triton hash grid needs a CUDA device (or TRITON_INTERPRET=1)")
    if backend == "tcnn" or (backend == "auto" and _tcnn_available()):
        import tinycudann  # noqa: F401  # raises where "tcnn" was asked for and is missing

        return "tcnn"
    if _triton_available():
        return "triton"
    if backend == "triton":
        raise ImportError("the triton hash grid needs triton: pip install 'dream3d[cuda]'")
    return "torch"


def build_grid(config: HashGridConfig, device: torch.device | str, seed: int = 0) -> nn.Module:
    """The hash grid of ``config.backend`` for ``device`` (see ``grid_backend``), not yet moved
    there; ``seed`` seeds tcnn's table, the others draw from torch's RNG."""
    backend = grid_backend(config.backend, device)
    if backend == "tcnn":
        return TcnnHashGrid(config, seed)
    return TritonHashGrid(config) if backend == "triton" else HashGrid(config)


@dataclass(frozen=True)
class DensityConfig:
    """A field's MLP head and how its output becomes density, albedo and normals: what every
    field shares, whatever encodes the points (``FieldConfig``: a hash grid; triplanes:
    generators.nerf.amortised)."""

    hidden: int = 32  # MLP width
    layers: int = 1  # hidden layers of the MLP
    bound: float = 1.0  # the field covers [-bound, bound]^3; density is 0 outside
    # density = exp(raw) (Instant-NGP, stable-dreamfusion) or softplus(raw); softplus left a
    # fog of density ~5 whose inside fell below the surface threshold (sphere 3D IoU 0.59)
    activation: Activation = "exp"
    blob_density: float = 10.0  # Magic3D blob: pre-activation bias at the origin
    blob_radius: float = 0.5  # where the blob bias crosses zero
    normals: NormalMode = "autograd"  # -grad(density) by autograd or by central differences
    normal_step: float = 1e-2  # central-difference step, world units ("finite" only)

    def __post_init__(self):
        check_choice("density activation", self.activation, ACTIVATIONS)
        lengths = ("bound", "blob_radius", "normal_step")
        check_ranges(
            self,
            {"hidden": AT_LEAST_1, "layers": NON_NEGATIVE} | dict.fromkeys(lengths, POSITIVE),
        )


@dataclass(frozen=True)
class FieldConfig(DensityConfig):
    """Hash grid -> MLP -> (density, albedo); defaults are the CPU-small field.

    scenes/presets/cuda.yaml sets threestudio's: 16 x 2 levels, 2^19 table, max res 2048, MLP 64.
    """

    grid: HashGridConfig = field(default_factory=HashGridConfig)  # positional encoding


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """exp(x) whose gradient is exp(min(x, 15)) (stable-dreamfusion's truncated exp): a large
    density keeps a bounded gradient."""
    return _TruncExp.apply(x)


class DensityField(nn.Module):
    """What the renderer, the mesh export and the scores read of a field: density and albedo of
    world points, and normals, from ``raw(points)`` (pre-activation density with the blob bias,
    albedo) and ``config`` (a DensityConfig: bound, activation, blob, normals). Subclasses say
    how points become ``raw``: a hash grid (``NeRFField``) or triplanes
    (generators.nerf.amortised).
    """

    config: DensityConfig

    def raw(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-activation density (N,) with the blob bias, and albedo (N, 3) in (0, 1)."""
        raise NotImplementedError

    def blob(self, points: torch.Tensor) -> torch.Tensor:
        """Magic3D's density blob, blob_density * (1 - |x| / blob_radius): (N,)."""
        c = self.config
        return c.blob_density * (1 - points.norm(dim=-1) / c.blob_radius)

    def activate(self, raw: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Density (N,) = softplus(raw) or exp(raw), zero outside the box [-bound, bound]^3."""
        inside = (points.abs() <= self.config.bound).all(-1)
        sigma = F.softplus(raw) if self.config.activation == "softplus" else trunc_exp(raw)
        return torch.where(inside, sigma, torch.zeros_like(raw))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density (N,) >= 0 and albedo (N, 3) of points (N, 3)."""
        raw, albedo = self.raw(points)
        return self.activate(raw, points), albedo

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """Density (N,) of points (N, 3)."""
        return self(points)[0]

    def albedo(self, points: torch.Tensor) -> torch.Tensor:
        """Albedo (N, 3) of points (N, 3)."""
        return self(points)[1]

    def normals(self, points: torch.Tensor, create_graph: bool | None = None) -> torch.Tensor:
        """Unit normals (N, 3) = -grad sigma / |grad sigma| (see ``with_normals``)."""
        return self.with_normals(points, create_graph)[2]

    def with_normals(
        self, points: torch.Tensor, create_graph: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Density (N,), albedo (N, 3) and unit normals (N, 3) in one pass.

        Normals are -grad / |grad| of the pre-activation density (softplus is increasing, so
        the direction is the density's). ``create_graph`` (default: whether grad mode is on)
        keeps the normals differentiable in the field's parameters, which shading and the
        orientation loss need to shape geometry; "finite" normals always are.
        """
        if self.config.normals == "finite":
            density, albedo = self(points)
            return density, albedo, self.finite_normals(points)
        outer = torch.is_grad_enabled()
        create_graph = outer if create_graph is None else create_graph
        with torch.enable_grad():
            x = points.detach().requires_grad_(True)
            raw, albedo = self.raw(x)
            (grad,) = torch.autograd.grad(
                raw.sum(), x, create_graph=create_graph, retain_graph=outer
            )
        density, normals = self.activate(raw, x), -F.normalize(grad, dim=-1)
        if not outer:
            return density.detach(), albedo.detach(), normals.detach()
        return density, albedo, normals

    def finite_normals(self, points: torch.Tensor) -> torch.Tensor:
        """Unit normals (N, 3) from central differences of the raw density, step normal_step."""
        offsets = torch.eye(3, device=points.device) * self.config.normal_step  # (3, 3)
        probe = torch.cat([points[:, None] + offsets, points[:, None] - offsets], 1)  # (N, 6, 3)
        raw = self.raw(probe.reshape(-1, 3))[0].reshape(-1, 2, 3)
        return -F.normalize(raw[:, 0] - raw[:, 1], dim=-1)


class NeRFField(DensityField):
    """Density and albedo of world points: sigma = act(mlp_0(enc(x)) + blob(x)).

    Density activation: softplus, as Magic3D and threestudio, or exp (truncated gradient), as
    Instant-NGP and stable-dreamfusion: exp reaches the densities of solid surfaces within a
    few hundred steps, where softplus leaves a fog of density ~5 (measured); the blob bias
    ``blob_density * (1 - |x| / blob_radius)`` (Magic3D's form of DreamFusion's density blob)
    makes the initial field a soft ball at the origin. Albedo = sigmoid(mlp_{1:4}(enc(x))).
    """

    def __init__(self, config: FieldConfig = FieldConfig(), seed: int = 0, device="cpu"):
        super().__init__()
        self.config = config
        with seeded(seed):
            self.encoding = build_grid(config.grid, device, seed)
            widths = [self.encoding.out_dim] + [config.hidden] * config.layers
            layers = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.mlp = nn.Sequential(*layers, nn.Linear(widths[-1], 4))
        self.to(device)

    def raw(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-activation density (N,) with the blob bias, and albedo (N, 3) in (0, 1)."""
        c = self.config
        unit = (points / c.bound + 1).mul(0.5).clamp(0, 1)  # [-bound, bound]^3 -> [0, 1]^3
        h = self.mlp(self.encoding(unit))  # (N, 4)
        return h[:, 0] + self.blob(points), torch.sigmoid(h[:, 1:])
