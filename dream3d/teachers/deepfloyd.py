"""DeepFloyd IF stage I as a teacher: a pixel-space eps model behind ``eps(x_t, t, cond)``.

There is no VAE: renders (B, 3, H, W) in [-1, 1] are the teacher's samples once resized,
bilinearly and differentiably, to the UNet's side (64 px for IF-I). Text goes through T5 as
diffusers' ``IFPipeline.encode_prompt`` does it: lower-cased and stripped, padded or truncated
to 77 tokens, the attention mask passed to the encoder; ``""`` is the unconditional prompt,
encoded the same way. The UNet's output holds eps and, in as many channels again, its learned
variance range (Nichol & Dhariwal 2021); only eps is kept. IF-I is an eps model on the cosine
schedule (``squaredcos_cap_v2``); ``prediction_type`` and ``variance_type`` are read from the
scheduler's config all the same.

Memory: IF-I-XL's UNet (4.3B parameters) and T5-XXL's encoder (4.8B) take about 8.6 + 9.5 GB
in fp16. The text encoder only encodes each prompt once (the encodings are cached), so
``text_device="cpu"`` keeps it out of GPU memory (in fp32 there: about 19 GB of RAM).

Models load as Stable Diffusion's do (``locate``): from a diffusers folder or the Hugging Face
cache, never downloaded (DESIGN.md section 3).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dream3d.teachers.stable_diffusion import LatentEps, cached_models, locate, pipeline_class

DEFAULT_MODEL = "DeepFloyd/IF-I-XL-v1.0"
PIPELINE = "IFPipeline"  # model_index.json's _class_name of a stage I pipeline
MAX_TOKENS = 77  # IF's T5 was trained on 77 tokens (IFPipeline.encode_prompt)
LEARNED_VARIANCE = ("learned", "learned_range")  # variance types whose UNet outputs 2x channels


def locate_if(name: str) -> Path:
    """The IF stage I pipeline folder ``name`` names (see ``locate``), else a ValueError."""
    try:
        path = locate(name)
    except ValueError as err:
        if not name.startswith("DeepFloyd/"):
            raise
        gated = "DeepFloyd's models are gated: accept the licence on the model's Hub page first"
        raise ValueError(f"{err} ({gated})") from None
    kind = pipeline_class(path / "model_index.json")
    if kind != PIPELINE:
        raise ValueError(f"{name} is a {kind}, not a DeepFloyd IF stage I pipeline ({PIPELINE})")
    return path


def cached_if_models() -> list[str]:
    """Hub ids of the IF stage I pipelines in the local Hugging Face cache."""
    return cached_models(PIPELINE)


class PixelEps(LatentEps):
    """IF's UNet on its schedule: ``eps(x_t, t, cond)`` on (B, 3, H, W) pixels.

    With a learned variance the UNet's output is (eps, variance range) along channels, and
    eps is its first half (``LatentEps.eps`` keeps the first half of any wider output); this
    class checks the widths agree. ``.unet`` is the whole UNet (fake scores copy or wrap it).
    """

    def __init__(self, unet, alphas_cumprod: torch.Tensor, prediction_type: str, variance_type):
        super().__init__(unet, alphas_cumprod, prediction_type)
        halves = 2 if variance_type in LEARNED_VARIANCE else 1
        if unet.config.out_channels != halves * unet.config.in_channels:
            raise ValueError(
                f"a UNet with {unet.config.in_channels} input channels and variance type "
                f"{variance_type!r} should output {halves * unet.config.in_channels} channels, "
                f"not {unet.config.out_channels}"
            )


class IFTeacher(nn.Module):
    """Teacher protocol around a diffusers IF stage I pipeline's parts (weights frozen)."""

    fake_score = "lora"  # IKL's fake score: a LoRA of the UNet (ProlificDreamer), not a copy

    def __init__(self, denoiser: PixelEps, text_encoder, tokenizer):
        super().__init__()
        self.denoiser = denoiser.requires_grad_(False)
        self.text_encoder = text_encoder.requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = denoiser.unet.config.sample_size  # renders are resized to this side
        self.alphas_cumprod = denoiser.alphas_cumprod
        self._prompts: dict[str, torch.Tensor] = {}  # prompt -> (77, D), encoded once

    @classmethod
    def load(cls, name: str = DEFAULT_MODEL, device="cpu", dtype=None, text_device=None):
        """From a diffusers folder or the Hub cache (``locate_if``); fp16 on CUDA by default.
        ``text_device``: where T5 runs (default ``device``), in fp32 on a CPU."""
        path = locate_if(name)
        dtype = dtype or _default_dtype(device)
        text_device = text_device or device
        text_dtype = dtype if str(text_device) == str(device) else _default_dtype(text_device)
        try:
            denoiser, text, tokenizer = _parts(path, dtype, text_dtype)
        except OSError as err:  # a part missing from the folder
            message = " ".join(str(err).split())  # one line
            raise ValueError(f"{path} is not a complete IF pipeline: {message}") from None
        return cls(denoiser.to(device), text.to(text_device), tokenizer).eval()

    @property
    def device(self) -> torch.device:
        return self.denoiser.unet.device

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B, 77, D) T5 hidden states, as IFPipeline makes them; each prompt encoded once."""
        new = sorted({p for p in prompts if p not in self._prompts})
        if new:
            tokens = self.tokenizer(
                [p.lower().strip() for p in new],
                padding="max_length",
                max_length=MAX_TOKENS,
                truncation=True,
                return_tensors="pt",
            )
            device = self.text_encoder.device
            hidden = self.text_encoder(
                tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device)
            )[0]
            self._prompts.update(zip(new, hidden.float().to(self.device)))
        return torch.stack([self._prompts[p] for p in prompts])

    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """Renders (B, 3, H, W) in [-1, 1] -> the UNet's samples (B, 3, S, S): bilinear resize
        (antialiased when shrinking), differentiable in ``rgb``; the identity at S."""
        return _resize(rgb, self.image_size)

    @torch.no_grad()
    def decode_images(self, x: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Samples (B, 3, S, S) -> images in [-1, 1] (clamped), resized to ``size`` if given."""
        return _resize(x.float().clamp(-1, 1), size or x.shape[-1])

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        """eps prediction (B, 3, S, S) for noisy samples; cond None: the ``""`` prompt."""
        if cond is None:
            cond = self.encode_prompt([""]).expand(x_t.shape[0], -1, -1)
        return self.denoiser.eps(x_t, t, cond)


def _parts(path: Path, dtype, text_dtype):
    """(PixelEps, T5 encoder, tokenizer) from an IF pipeline folder, on the CPU."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, T5EncoderModel

    unet = UNet2DConditionModel.from_pretrained(
        path, subfolder="unet", torch_dtype=dtype, variant=_variant(path / "unet", dtype)
    )
    text = T5EncoderModel.from_pretrained(
        path,
        subfolder="text_encoder",
        dtype=text_dtype,
        variant=_variant(path / "text_encoder", text_dtype),
    )
    tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
    scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    config = scheduler.config
    abar = scheduler.alphas_cumprod.double()
    return PixelEps(unet, abar, config.prediction_type, config.variance_type), text, tokenizer


def _default_dtype(device) -> torch.dtype:
    return torch.float16 if str(device).startswith("cuda") else torch.float32


def _variant(folder: Path, dtype: torch.dtype) -> str | None:
    """ "fp16" where ``folder`` has fp16 weight files and they suit: fp16 is asked for, or they
    are the only weights there (IF's Hub repos hold both; a download may have taken one)."""
    if not folder.is_dir():
        return None
    weights = [f.name for f in folder.iterdir() if f.suffix in (".safetensors", ".bin")]
    half = [w for w in weights if ".fp16" in w]
    return "fp16" if half and (dtype == torch.float16 or len(half) == len(weights)) else None


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), bilinear, antialiased when shrinking."""
    if x.shape[-2:] == (size, size):
        return x
    shrink = min(x.shape[-2:]) > size
    return F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=shrink)
