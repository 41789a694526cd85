"""Ground-truth renderer: batched sphere tracing of the catalogue's SDFs, Lambertian + ambient.

One fixed directional light in world space (from the front, above and the object's left, +y),
no shadows, a plain background. Deterministic, CPU-friendly: rays start where they enter the
bounding sphere and leave the batch once they hit or exit it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dream3d.cameras import Cameras
from scenes.catalogue import BACKGROUND, COLOURS, SHAPES

BOUND = 0.92  # radius of the sphere every shape lies in (with a margin)
LIGHT = (0.5, 0.35, 0.8)  # direction towards the light, normalised where used
AMBIENT = 0.4  # shade = albedo * (AMBIENT + DIFFUSE * max(n . l, 0))
DIFFUSE = 0.6
STEPS = 64  # sphere-tracing iterations
EPS = 1e-3  # a ray hits when the distance falls below this


def enter_exit(
    origins: torch.Tensor, dirs: torch.Tensor, radius: float = BOUND
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ray parameters (N,), (N,) where rays (N, 3) enter and leave the ball; NaN on a miss."""
    b = (origins * dirs).sum(-1)
    disc = b * b - (origins * origins).sum(-1) + radius * radius
    root = disc.sqrt()  # NaN where the ray misses
    return (-b - root).clamp(min=0), -b + root


def sphere_trace(
    sdf: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,  # (N, 3)
    dirs: torch.Tensor,  # (N, 3) unit
    steps: int = STEPS,
    eps: float = EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hit flags (N,) bool and distances t (N,) along the rays to the hits (junk on a miss)."""
    n = len(origins)
    hit, t_hit = torch.zeros(n, dtype=torch.bool), torch.zeros(n)
    t, t_far = enter_exit(origins, dirs)
    live = torch.nonzero(t_far > 0).squeeze(1)  # rays through the ball (NaN compares False)
    state = torch.cat([origins, dirs, t[:, None], t_far[:, None]], 1)[live]  # (L, 8)
    for _ in range(steps):
        if len(live) == 0:
            break
        o, d, t, t_far = state[:, :3], state[:, 3:6], state[:, 6], state[:, 7]
        dist = sdf(o + t[:, None] * d)
        done = dist < eps
        hit.index_copy_(0, live, done)
        t_hit.index_copy_(0, live, t)
        t += dist  # in place: t is a view of state
        keep = torch.nonzero(~done & (t < t_far)).squeeze(1)
        state, live = state.index_select(0, keep), live.index_select(0, keep)
    return hit, t_hit


def normals(
    sdf: Callable[[torch.Tensor], torch.Tensor], points: torch.Tensor, h: float = 1e-3
) -> torch.Tensor:
    """Unit normals (N, 3): central differences of the SDF, step h along each axis."""
    offsets = torch.eye(3) * h  # (3, 3)
    probe = torch.cat([points[:, None] + offsets, points[:, None] - offsets], 1)  # (N, 6, 3)
    d = sdf(probe.reshape(-1, 3)).reshape(-1, 2, 3)
    return F.normalize(d[:, 0] - d[:, 1], dim=-1)


def trace(shapes: list[str], cameras: Cameras, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground (B, H, W) bool and unit normals (B, H, W, 3) (zero off the object)."""
    origins, dirs = cameras.rays(size)  # (B, H, W, 3) each
    hit = torch.zeros(origins.shape[:3], dtype=torch.bool)
    normal = torch.zeros_like(origins)
    for key in sorted(set(shapes)):
        sdf = SHAPES[key]
        rows = torch.tensor([s == key for s in shapes])
        o, d = origins[rows].reshape(-1, 3), dirs[rows].reshape(-1, 3)
        h, t = sphere_trace(sdf, o, d)
        n = torch.zeros_like(o)
        n[h] = normals(sdf, o[h] + t[h, None] * d[h])
        hit[rows], normal[rows] = h.view(-1, size, size), n.view(-1, size, size, 3)
    return hit, normal


def shade(
    hit: torch.Tensor, normal: torch.Tensor, albedo: torch.Tensor, background=BACKGROUND
) -> torch.Tensor:
    """Images (B, 3, H, W) from hits (B, H, W), normals (B, H, W, 3) and albedos (B, 3)."""
    light = F.normalize(torch.tensor(LIGHT), dim=0)
    lambert = (normal @ light).clamp(min=0)  # (B, H, W)
    rgb = albedo[:, None, None] * (AMBIENT + DIFFUSE * lambert)[..., None]  # (B, H, W, 3)
    rgb = torch.where(hit[..., None], rgb, torch.tensor(background))
    return rgb.permute(0, 3, 1, 2).clamp(0, 1).contiguous()  # (B, 3, H, W)


def render_with_mask(
    shapes: list[str],
    colours: list[str],
    cameras: Cameras,
    size: int = 32,
    supersample: int = 2,
    background: tuple[float, float, float] = BACKGROUND,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, size, size) in [0, 1] and foreground masks (B, 1, size, size) in [0, 1].

    Traces s x s rays per pixel (s = ``supersample``) and averages them (anti-aliasing); the
    mask is each pixel's coverage, exactly 0 or 1 with s = 1.
    """
    if not len(shapes) == len(colours) == len(cameras):
        raise ValueError(f"{len(shapes)} shapes, {len(colours)} colours, {len(cameras)} cameras")
    hit, normal = trace(shapes, cameras, size * supersample)
    albedo = torch.tensor([COLOURS[c] for c in colours]).reshape(-1, 3)  # (B, 3)
    images, masks = shade(hit, normal, albedo, background), hit[:, None].float()
    if supersample > 1:
        images, masks = F.avg_pool2d(images, supersample), F.avg_pool2d(masks, supersample)
    return images, masks


def render(
    shapes: list[str], colours: list[str], cameras: Cameras, size: int = 32, supersample: int = 2
) -> torch.Tensor:
    """Images (B, 3, size, size) in [0, 1] of shapes[i] in colours[i] seen by cameras[i]."""
    return render_with_mask(shapes, colours, cameras, size, supersample)[0]
