"""Fake scores for IKL: models of the generator's own noised distribution p_g,t.

Each has ``eps(x_t, t, cond, x0, pose=None)``; ``x0`` (the sample x_t was made from) is read
only by the analytic Dirac score, ``pose`` (B, POSE_DIM) camera features only by UNet fake
scores built with ``fake_camera``. Learned ones are ``nn.Module`` s fitted online by denoising
score matching; ``fake_memory`` says what fitting one holds.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from dream3d.diffusion import coefficients
from dream3d.nn import CameraEmbedding, FourierTime, mlp
from dream3d.teachers.base import teacher_eps


def _camera(net: nn.Module, on: bool) -> CameraEmbedding | None:
    """A CameraEmbedding for ``net``'s UNet (its ``unet``) if ``on``, else None."""
    return CameraEmbedding.of(getattr(net, "unet", None)) if on else None


def _reading(camera: CameraEmbedding | None, net: nn.Module, pose, x_t: torch.Tensor):
    """``camera.added`` to ``net.unet`` for this batch, or a no-op without a camera."""
    return nullcontext() if camera is None else camera.added(net.unet, pose, x_t.shape[0])


class DiracScore(nn.Module):
    """Exact eps of a point mass at x0: p_g,t = N(a_t x0, s_t^2 I), eps = (x_t - a_t x0) / s_t."""

    trainable = False
    from_scratch = False  # exact from the first step

    def __init__(self, abar: torch.Tensor):
        super().__init__()
        self.abar = abar

    @classmethod
    def build(cls, teacher, config, dim: int, n_classes: int):
        return cls(teacher.alphas_cumprod)

    def eps(self, x_t, t, cond, x0, pose=None):
        a, s = coefficients(self.abar, t, x_t)
        return (x_t - a * x0) / s


class MLPScore(nn.Module):
    """A time-conditioned MLP eps(x_t, t[, class]) for low-dimensional data, from scratch."""

    trainable = True
    from_scratch = True

    def __init__(
        self, dim: int, steps: int, hidden: int = 128, layers: int = 3, n_classes: int = 0
    ):
        super().__init__()
        self.time = FourierTime(steps)
        self.classes = nn.Embedding(n_classes + 1, 16) if n_classes else None  # row 0: no class
        self.net = mlp(dim + self.time.dim + (16 if n_classes else 0), dim, hidden, layers)

    @classmethod
    def build(cls, teacher, config, dim: int, n_classes: int):
        if dim < 1:
            raise ValueError("the mlp fake score needs the data dimension (dim=...)")
        steps = len(teacher.alphas_cumprod)
        return cls(dim, steps, config.fake_hidden, config.fake_layers, n_classes)

    def eps(self, x_t, t, cond=None, x0=None, pose=None):
        h = [x_t.flatten(1), self.time(t)]
        if self.classes is not None:
            c = torch.zeros_like(t) if cond is None else cond.clamp_min(-1) + 1
            h.append(self.classes(c))
        return self.net(torch.cat(h, 1)).reshape(x_t.shape)


class TeacherCopy(nn.Module):
    """A trainable deep copy of a network teacher, so p_g starts as q (Diff-Instruct, Alg. 1).

    A latent teacher's ``denoiser`` (its UNet) is copied alone: the fake score works on the
    latents the teacher's VAE made, and needs neither the VAE nor the text encoder. With
    ``camera`` it also reads each sample's pose (CameraEmbedding), starting as the teacher.
    """

    trainable = True
    from_scratch = False  # starts as the teacher: p_g = q
    reads_camera = True  # can be built with fake_camera

    def __init__(self, teacher: nn.Module, camera: bool = False):
        super().__init__()
        if not isinstance(teacher, nn.Module):
            raise ValueError("fake score 'teacher' needs a network teacher; use 'mlp' instead")
        source = getattr(teacher, "denoiser", teacher)
        self.net = copy.deepcopy(source).float().requires_grad_(True)  # fp32 for Adam
        self.camera = _camera(self.net, camera)

    @classmethod
    def build(cls, teacher, config, dim: int, n_classes: int):
        return cls(teacher, config.fake_camera)

    def eps(self, x_t, t, cond, x0=None, pose=None):
        with _reading(self.camera, self.net, pose, x_t):
            return teacher_eps(self.net, x_t, t, cond, pose)  # a camera teacher's copy: its camera


class UNetScore(nn.Module):
    """A small pixel-space UNet fitted from scratch, for teachers that are not networks.

    ProlificDreamer's fake score is a LoRA of the teacher; the oracle has no weights to copy,
    so IKL warms this one up on the generator's first samples (``fake_warmup``). It ignores
    the caption: the generator's renders are its only data. With ``camera`` it reads each
    sample's pose (CameraEmbedding).
    """

    trainable = True
    from_scratch = True
    reads_camera = True  # can be built with fake_camera

    def __init__(self, size: int, channels: tuple[int, ...] = (16, 32, 32), camera: bool = False):
        super().__init__()
        from dream3d.teachers.tiny import TinyConfig, TinyTeacher

        config = TinyConfig(size=size, block_out_channels=channels, head_dim=16, text_in_time=False)
        self.net = TinyTeacher(config)
        self.camera = _camera(self.net, camera)

    @classmethod
    def build(cls, teacher, config, dim: int, n_classes: int):
        return cls(config.fake_size, camera=config.fake_camera)

    def eps(self, x_t, t, cond=None, x0=None, pose=None):
        with _reading(self.camera, self.net, pose, x_t):
            return self.net.eps(x_t, t, None)


# The Linear layers a LoRA fake score adapts, by the end of their name in a diffusers UNet: each
# attention's query, key, value and output projections, and the text key/value projections of
# DeepFloyd IF's added-KV attention (the layers diffusers' LoRA attention processors adapted in
# ProlificDreamer's and threestudio's VSD)
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_k_proj", "add_v_proj")


def lora_targets(unet: nn.Module) -> dict[str, nn.Linear]:
    """``unet``'s Linear layers named by LORA_TARGETS, by module name."""
    return {
        name: m
        for name, m in unet.named_modules()
        if isinstance(m, nn.Linear) and name.endswith(tuple("." + t for t in LORA_TARGETS))
    }


class LoRA(nn.Module):
    """A low-rank update of one Linear layer, W x + (alpha / r) B A x (Hu et al. 2022), in
    float32 whatever the layer's dtype. B starts at zero, so the update starts at exactly 0;
    A ~ N(0, 1/r^2) as diffusers' LoRA layers that ProlificDreamer trained."""

    def __init__(self, layer: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.down = nn.Linear(layer.in_features, rank, bias=False)  # A (r, in)
        self.up = nn.Linear(rank, layer.out_features, bias=False)  # B (out, r)
        with torch.no_grad():
            self.down.weight.normal_(0, 1 / rank, generator=generator)
            self.up.weight.zero_()
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The update (..., out) for the layer's input x (..., in)."""
        return self.up(self.down(x.to(self.down.weight.dtype))) * self.scale

    def hook(self, layer: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        """A forward hook giving the layer's output plus this update, in the output's dtype."""
        return (out.float() + self(args[0])).to(out.dtype)


class LoRAScore(nn.Module):
    """The teacher's own UNet plus LoRA adapters on its attention projections: the variational
    score of ProlificDreamer (Wang et al. 2023, VSD), for teachers too big to copy.

    One UNet serves both scores. The adapters (and the camera embedding, with ``camera``) are
    hooked into it only while the fake score runs (``applied``); outside, every caller of the
    teacher sees the plain teacher, bit for bit. B = 0 at start, so the fake starts as the
    teacher (p_g = q). The teacher's network is kept out of this module's children: its
    parameters, ``.to`` and ``state_dict`` are the adapters' (float32, for Adam) and the
    camera's alone.
    """

    trainable = True
    from_scratch = False  # starts as the teacher: p_g = q
    reads_camera = True  # can be built with fake_camera

    def __init__(self, teacher, rank: int = 4, alpha: float | None = None, camera: bool = False):
        super().__init__()
        net = getattr(teacher, "denoiser", teacher)  # a latent teacher's UNet on its schedule
        if not isinstance(getattr(net, "unet", None), nn.Module):
            raise ValueError("fake score 'lora' needs a teacher with a diffusers UNet (sd, if)")
        object.__setattr__(self, "net", net)  # not a submodule: the teacher's weights stay its own
        layers = lora_targets(net.unet)
        if not layers:
            raise ValueError("fake score 'lora': the teacher's UNet has no attention projections")
        device = next(net.unet.parameters()).device
        rng = torch.Generator().manual_seed(0)  # the same start in every run, global RNG untouched
        alpha = rank if alpha is None else alpha
        adapters = {n: LoRA(m, rank, alpha, rng) for n, m in layers.items()}
        # module names hold dots, which ModuleDict keys may not
        self.lora = nn.ModuleDict({n.replace(".", "/"): a for n, a in adapters.items()})
        self.lora.to(device)
        self._hooked = list(zip(layers.values(), adapters.values()))  # a plain list: not owned
        self.camera = _camera(net, camera)
        if self.camera is not None:
            self.camera.to(device)

    @classmethod
    def build(cls, teacher, config, dim: int, n_classes: int):
        return cls(teacher, config.fake_rank, config.fake_alpha, config.fake_camera)

    @contextmanager
    def applied(self):
        """While open, the teacher's UNet carries these adapters (removed on exit, even on an
        exception)."""
        handles = []
        try:
            for layer, lora in self._hooked:
                handles.append(layer.register_forward_hook(lora.hook))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def eps(self, x_t, t, cond, x0=None, pose=None):
        with self.applied(), _reading(self.camera, self.net, pose, x_t):
            return teacher_eps(self.net, x_t, t, cond, pose)


def fake_memory(fake: nn.Module) -> dict:
    """What fitting ``fake`` holds besides the teacher: its parameters (``params``), the
    trainable ones (``trainable``), and ``bytes`` of its weights plus, per trainable weight,
    a gradient and Adam's two moments (each in the weight's dtype)."""
    params = list(fake.parameters())
    trainable = [p for p in params if p.requires_grad]
    size = sum(p.numel() * p.element_size() for p in params)
    size += 3 * sum(p.numel() * p.element_size() for p in trainable)
    n = sum(p.numel() for p in params)
    return {"params": n, "trainable": sum(p.numel() for p in trainable), "bytes": size}


# The fake scores IKL can fit, by name: each class has build(teacher, ikl_config, dim, n_classes)
# and says whether it starts from scratch (then IKL warms it up before the first step) and,
# in ``reads_camera``, whether it can read the camera (fake_camera).
FAKE_SCORES = {
    "dirac": DiracScore,
    "mlp": MLPScore,
    "teacher": TeacherCopy,
    "lora": LoRAScore,
    "unet": UNetScore,
}
