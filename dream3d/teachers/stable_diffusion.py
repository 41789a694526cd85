"""Stable Diffusion as a teacher: a latent eps model behind the same ``eps(x_t, t, cond)``.

Renders enter through ``encode_images``: resized to the model's image side and encoded by its
VAE (the posterior mean times the VAE's scaling factor), differentiably, so a guidance's
gradient on the latents reaches the renders (DreamFusion with SD, as threestudio does). Text
goes through the pipeline's CLIP tokenizer and text encoder; ``""`` is the unconditional
prompt. v-prediction models (SD 2.x at 768 px) are converted: eps = a_t v + s_t x_t
(x0-prediction ones too: eps = (x_t - a_t x0) / s_t).

Models load from a diffusers folder or from the Hugging Face cache only: nothing is
downloaded at run time (DESIGN.md section 3), and a model that is not on this machine is a
ValueError that says how to get it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dream3d.diffusion import check_choice, eps_from_prediction

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def locate(name: str) -> Path:
    """The diffusers pipeline folder ``name`` names: a local folder, or a Hub id's cached copy."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached, or not a valid id: either way it is not on this machine
        raise ValueError(
            f"the Hub model {name!r} is not on this machine, and dream3d downloads nothing at "
            f"run time: fetch it where there is internet (`hf download {name}`, into "
            f"{hub_cache()}) or give the path of a local diffusers folder"
        ) from None


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded models (HF_HUB_CACHE, HF_HOME, or the default)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def cached_models(pipeline: str = "StableDiffusionPipeline") -> list[str]:
    """Hub ids of the ``pipeline`` pipelines (a diffusers class name; Stable Diffusion by
    default) in the local Hugging Face cache."""
    if not hub_cache().is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    found = []
    for repo in scan_cache_dir(hub_cache()).repos:
        for revision in repo.revisions:
            index = revision.snapshot_path / "model_index.json"
            if repo.repo_type == "model" and index.is_file() and pipeline_class(index) == pipeline:
                found.append(repo.repo_id)
                break
    return sorted(found)


def pipeline_class(index: Path) -> str | None:
    """The diffusers pipeline class a ``model_index.json`` names."""
    return json.loads(index.read_text()).get("_class_name")


PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "sample"}  # diffusers'


class LatentEps(nn.Module):
    """The UNet on its schedule: ``eps(z_t, t, cond)`` in latent space (IKL copies this part)."""

    def __init__(self, unet, alphas_cumprod: torch.Tensor, prediction_type: str):
        super().__init__()
        check_choice("prediction type", prediction_type, tuple(PREDICTION_TYPES))
        self.unet = unet
        self.alphas_cumprod = alphas_cumprod  # (T,) float64
        self.prediction = PREDICTION_TYPES[prediction_type]  # eps | v | sample

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        dtype = self.unet.dtype
        t = t.to(x_t.device).expand(x_t.shape[0])
        out = self.unet(x_t.to(dtype), t, encoder_hidden_states=cond.to(dtype)).sample.float()
        out = out[:, : x_t.shape[1]]  # a learned variance (IF) follows in as many channels again
        return eps_from_prediction(out, x_t, t, self.alphas_cumprod, self.prediction)


class StableDiffusionTeacher(nn.Module):
    """Teacher protocol around a diffusers Stable Diffusion pipeline's parts (weights frozen)."""

    fake_score = "lora"  # IKL's default fake score: LoRA adapters on this UNet (ProlificDreamer)

    def __init__(self, denoiser: LatentEps, vae, text_encoder, tokenizer, image_size: int):
        super().__init__()
        self.denoiser = denoiser.requires_grad_(False)
        self.vae = vae.requires_grad_(False)
        self.text_encoder = text_encoder.requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = image_size  # renders are resized to this side before the VAE
        self.alphas_cumprod = denoiser.alphas_cumprod
        self._prompts: dict[str, torch.Tensor] = {}  # prompt -> (L, D), encoded once

    @classmethod
    def load(cls, name: str, device="cpu", dtype=None) -> StableDiffusionTeacher:
        """From a diffusers folder or the Hub cache (``locate``); fp16 on CUDA by default."""
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        path = locate(name)
        dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
        text = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        abar = scheduler.alphas_cumprod.double()
        denoiser = LatentEps(unet, abar, scheduler.config.prediction_type)
        image_size = unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
        return cls(denoiser, vae, text, tokenizer, image_size).to(device).eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B, L, D) CLIP hidden states; each prompt is encoded once, then cached."""
        new = sorted({p for p in prompts if p not in self._prompts})
        if new:
            tokens = self.tokenizer(
                new,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            )
            hidden = self.text_encoder(tokens.input_ids.to(self.device))[0].float()
            self._prompts.update(zip(new, hidden))
        return torch.stack([self._prompts[p] for p in prompts])

    def encode_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """Renders (B, 3, H, W) in [-1, 1] -> latents (B, 4, h, w), differentiable in ``rgb``."""
        size = (self.image_size, self.image_size)
        if rgb.shape[-2:] != size:
            rgb = F.interpolate(rgb, size, mode="bilinear", align_corners=False)
        posterior = self.vae.encode(rgb.to(self.vae.dtype)).latent_dist
        return posterior.mean.float() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_images(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, 4, h, w) -> images (B, 3, H, W) in [-1, 1] (clamped), by the VAE."""
        scaled = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        return self.vae.decode(scaled).sample.float().clamp(-1, 1)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None):
        """eps prediction (B, 4, h, w) for noisy latents; cond None: the ``""`` prompt."""
        if cond is None:
            cond = self.encode_prompt([""]).expand(x_t.shape[0], -1, -1)
        return self.denoiser.eps(x_t, t, cond)
