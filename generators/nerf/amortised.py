"""One generator of NeRFs for every caption: (caption, z) -> triplanes -> a radiance field.

Amortised text-to-3D (ATT3D, LATTE3D): one network replaces the per-prompt NeRF optimisation
of `dream3d run`, so an object costs one forward pass. Unlike ATT3D it also reads a noise z,
as ScaleDreamer's amortised VSD baseline does, so each caption has a distribution of objects
for IKL's fake score to keep and SDS's Dirac fake score to collapse.

Why triplanes: three axis-aligned feature planes (EG3D, LATTE3D) are images, so a small
convolutional decoder makes them from one vector and shares its filters across captions;
a point's features are three bilinear look-ups (``grid_sample``), cheap on a CPU, and decoded
by the same small MLP head a hash-grid NeRF uses (``DensityField``: density with Magic3D's
blob, albedo, normals). A hypernetwork into a hash grid (ATT3D) would emit ~10^5 table
entries per object from a linear layer; a triplane of 3 x 16 x 32^2 is half that, made by
convolutions. ``grid_sample`` has no second derivative, so the field's normals are central
differences (``normals: finite``), which shading and the orientation term differentiate once.

A sample is ``batch`` objects, each a (held-in caption, z) rendered from ``views`` random
cameras with the NeRF's shading and regularisers, so every guidance in the registry trains it
unchanged; its captions carry each camera's view word and ``info["pose"]`` its pose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dream3d.cameras import CameraConfig, pose_features, sample_cameras
from dream3d.train import Sample
from generators.nerf.field import DensityConfig, DensityField
from generators.nerf.occupancy import OccupancyGrid
from generators.nerf.render import (
    RegulariserConfig,
    RenderConfig,
    march_step,
    pick_shading,
    regularisers,
    render_image,
)
from scenes.catalogue import COLOURS, OBJECTS
from scenes.prompts import canonical, catalogue_prompts

SEED = 8  # the side of the first feature planes the mapping network emits


def held_out_prompts() -> list[str]:
    """The catalogue prompts kept out of training: object i (of OBJECTS) in colour i mod 8.

    Each pairs an object and a colour that training sees, never together (ATT3D's
    compositional split): 12 of the 108 prompts, every colour at least once."""
    colours = list(COLOURS)
    return [canonical(o, colours[i % len(colours)]) for i, o in enumerate(OBJECTS)]


def split_caption(caption: str) -> tuple[str, str]:
    """ "a red chair, side view" -> ("a red chair", "side")."""
    prompt, _, view = caption.rpartition(", ")
    if not prompt or not view.endswith(" view"):
        raise ValueError(f"not a view caption: {caption!r} (e.g. 'a red chair, side view')")
    return prompt, view[: -len(" view")]


@dataclass
class TriplaneConfig:
    """The amortised NeRF generator: (caption, z) -> triplanes -> field, rendered."""

    name: ClassVar[str] = "triplane"
    z_dim: int = 16  # noise input per object
    width: int = 256  # mapping network width
    channels: int = 16  # features per plane
    # per-object features every point reads (constant planes): its colour and overall look
    # need not be spread over the planes by the convolutions
    code: int = 16
    resolution: int = 32  # plane side: SEED doubled by upsampling convolutions
    views: int = 2  # renders of each object per step, from independent cameras
    holdout: bool = True  # keep held_out_prompts() out of training
    size: int = 32  # rendered image side: the teacher's resolution
    field: DensityConfig = dataclasses.field(
        default_factory=lambda: DensityConfig(normals="finite")
    )  # the MLP head (shared by every object)
    # each object's renders skip empty space through a grid made from its field (grid.skip)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)
    cameras: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    reg: RegulariserConfig = dataclasses.field(default_factory=RegulariserConfig)

    def __post_init__(self):
        if self.code < 0:
            raise ValueError(f"triplane code must be >= 0, got {self.code}")
        for key in ("z_dim", "width", "channels", "views", "size"):
            if getattr(self, key) < 1:
                raise ValueError(f"triplane {key} must be >= 1, got {getattr(self, key)}")
        r = self.resolution
        if r < SEED or r & (r - 1):
            raise ValueError(f"triplane resolution must be a power of 2 >= {SEED}, got {r}")
        if self.field.normals != "finite":
            raise ValueError("triplane fields need finite normals (grid_sample has no 2nd grad)")


class TriplaneField(DensityField):
    """One object's field: a point's features are the sum of its bilinear look-ups in the
    xy, xz and yz planes, decoded by the generator's shared MLP head."""

    def __init__(self, planes: torch.Tensor, head: nn.Module, config: DensityConfig):
        super().__init__()
        self.planes, self.head, self.config = planes, head, config  # planes (3, C, R, R)

    def raw(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        unit = (points / self.config.bound).clamp(-1, 1)
        coords = torch.stack([unit[:, [0, 1]], unit[:, [0, 2]], unit[:, [1, 2]]])  # (3, N, 2)
        features = F.grid_sample(self.planes, coords[:, :, None], align_corners=True)
        h = self.head(features.sum(0)[..., 0].T)  # (N, C) -> (N, 4)
        return h[:, 0] + self.blob(points), torch.sigmoid(h[:, 1:])


def object_grid(field: TriplaneField, render: RenderConfig, generator=None) -> OccupancyGrid | None:
    """A fresh occupancy grid of one object's field (None without ``render.grid.skip``): its
    renders skip empty space as a `dream3d run` NeRF's do."""
    grid = render.grid
    if not grid.skip:
        return None
    device = field.planes.device
    occupancy = OccupancyGrid(grid.resolution, render.radius, device)
    occupancy.refresh(field.density, march_step(render), grid.threshold, grid.decay, generator)
    return occupancy


class TriplaneNeRF(nn.Module):
    """One generated object, rendered, exported and scored as a `dream3d run` NeRF is (the
    outputs read ``field``, ``config.render`` and ``occupancy``)."""

    estimator = None

    def __init__(self, field: TriplaneField, config: TriplaneConfig):
        super().__init__()
        self.field, self.config = field, config
        self.occupancy = object_grid(field, config.render)

    def grids(self) -> dict:
        return {"occupancy": self.occupancy, "estimator": None}

    def refresh_occupancy(self, generator: torch.Generator | None = None) -> None:
        """Nothing to refresh: the object's field never changes (its grid is made with it)."""


def _mlp(widths: list[int]) -> nn.Sequential:
    layers = []
    for a, b in zip(widths[:-2], widths[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


class TriplaneGenerator(nn.Module):
    """G(caption, z) -> triplanes, with a shared MLP head that decodes them into a field.

    Built as the image generators of `dream3d distill` are, ``cls(config, teacher, captions,
    shape, seed)``: it reads captions through the teacher's (frozen) text encoder and learns
    the prompts of ``captions`` less the held-out ones."""

    def __init__(self, config: TriplaneConfig, teacher, captions: list[str], shape=None, seed=0):
        super().__init__()
        self.config = config
        held_out = set(held_out_prompts()) if config.holdout else set()
        prompts = dict.fromkeys(split_caption(c)[0] for c in captions)
        self.prompts = [p for p in prompts if p not in held_out]
        if not self.prompts:
            raise ValueError("the triplane generator has no caption left to learn")
        self.captions = [c for c in captions if split_caption(c)[0] in self.prompts]
        self.encode = teacher.encode_prompt  # (B, 1, D): the teacher's frozen text encoder
        # the catalogue's embeddings differ little (cosine ~0.9 between two colours of one
        # object): each dimension is standardised over every catalogue prompt, so a colour
        # word moves the network's input as much as an object word (two 600-step pilots
        # without: every object one colour)
        every = self.encode(catalogue_prompts())[:, 0].float().cpu()
        self.register_buffer("text_mean", every.mean(0))
        self.register_buffer("text_std", every.std(0).clamp(min=1e-4))
        dim = every.shape[-1]
        c, hidden = config.channels, 32
        ups = (config.resolution // SEED).bit_length() - 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            grid = 3 * hidden * SEED**2  # the seed planes, then the object's code
            self.mapping = _mlp(
                [dim + config.z_dim, config.width, config.width, grid + config.code]
            )
            convs = []
            for i in range(ups):
                out = c if i == ups - 1 else hidden
                convs += [
                    nn.Upsample(scale_factor=2, mode="bilinear"),
                    nn.Conv2d(hidden, out, 3, padding=1),
                ]
                convs += [nn.SiLU()] if i < ups - 1 else []
            self.convs = nn.Sequential(*convs) if convs else nn.Conv2d(hidden, c, 1)
            f = config.field
            self.head = _mlp([c + config.code] + [f.hidden] * f.layers + [4])
        self.hidden = hidden
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.in_teacher_space = False

    def embed(self, prompts: list[str]) -> torch.Tensor:
        """(B, D) text embeddings of prompts (no view word), standardised over the catalogue."""
        e = self.encode(list(prompts))[:, 0].to(self.text_mean.device).float()
        return (e - self.text_mean) / self.text_std

    def planes(self, prompts: list[str], z: torch.Tensor) -> torch.Tensor:
        """Triplanes (B, 3, C + code, R, R) of each (prompt, z): the convolutions' C channels,
        then the object's code as constant planes (a third of it on each, so every point's
        summed features end with the code itself)."""
        b, r, k = len(prompts), self.config.resolution, self.config.code
        e = self.embed(prompts)
        h = self.mapping(torch.cat([e, z.to(e.device)], -1))
        grid, code = h[:, : h.shape[1] - k], h[:, h.shape[1] - k :]
        planes = self.convs(grid.reshape(b * 3, self.hidden, SEED, SEED)).reshape(b, 3, -1, r, r)
        constant = (code / 3)[:, None, :, None, None].expand(b, 3, k, r, r)
        return torch.cat([planes, constant], 2)

    def field(self, planes: torch.Tensor) -> TriplaneField:
        """The field of one object's planes (3, C + code, R, R)."""
        return TriplaneField(planes, self.head, self.config.field)

    def instance(self, prompt: str, z: torch.Tensor) -> TriplaneNeRF:
        """One object (no graph) as a NeRF the outputs and scores read; z (z_dim,)."""
        with torch.no_grad():
            planes = self.planes([prompt], z[None])[0]
        return TriplaneNeRF(self.field(planes), self.config)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.config.z_dim, generator=generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sample:
        """n objects of held-in prompts, ``views`` renders each: x (n views, 3, size, size)."""
        c, v = self.config, self.config.views
        index = torch.randint(len(self.prompts), (n,), generator=generator).tolist()
        prompts = [self.prompts[i] for i in index]
        z = self.noise(n, generator)
        planes = self.planes(prompts, z)
        cameras = sample_cameras(n * v, generator, c.cameras)
        shading = pick_shading(int(self.steps), c.render.shading, generator)
        outs = []
        for i in range(n):
            field = self.field(planes[i])
            grid = object_grid(field, c.render, generator)
            one = cameras[i * v : (i + 1) * v]
            outs.append(
                render_image(field, one, c.size, c.render, shading, generator, occupancy=grid)
            )
        out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
        reg, logs = regularisers(out, c.reg)
        self.steps += 1
        views = cameras.views(c.cameras)
        info = {
            "captions": [f"{prompts[i // v]}, {view} view" for i, view in enumerate(views)],
            "views": views,
            "pose": pose_features(cameras).to(out["rgb"].device),
            "prompts": prompts,
            "z": z,
            "shading": shading,
        }
        return Sample(out["rgb"] * 2 - 1, info, aux_loss=reg, aux_logs=logs)

    @torch.no_grad()
    def draw(self, captions: list[str], generator: torch.Generator | None = None) -> torch.Tensor:
        """One albedo render (B, 3, size, size) in [-1, 1] per view caption (any catalogue
        caption, held out or not): z and a camera from that view's part of the camera
        distribution, both from ``generator``; bin midpoints."""
        c = self.config
        render = dataclasses.replace(c.render, jitter=False)
        prompts, views = zip(*map(split_caption, captions)) if captions else ((), ())
        z = self.noise(len(captions), generator)
        cameras = [sample_cameras(1, generator, c.cameras, view=v) for v in views]
        images = []
        for start in range(0, len(captions), 64):  # planes 64 objects at a time
            planes = self.planes(list(prompts[start : start + 64]), z[start : start + 64])
            for p, camera in zip(planes, cameras[start : start + 64]):
                field = self.field(p)
                grid = object_grid(field, c.render)
                images.append(render_image(field, camera, c.size, render, occupancy=grid)["rgb"])
        return torch.cat(images).cpu() * 2 - 1
