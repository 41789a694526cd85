"""Teachers with the architectures of Stable Diffusion 1.5 and DeepFloyd IF-I-XL and random
weights, built on the device in seconds with nothing downloaded: what `dream3d bench speed
--device cuda` times (a step's cost depends on the shapes, not on the weights' values).

The UNets are the real sizes (SD 1.5: 860M parameters; IF-I-XL: 4.30B, as published); the text
encoders are as wide as the real ones but shallow (prompts are encoded once and cached, so
they are never timed), over a character vocabulary written to a temporary folder.
``scale`` < 1 shrinks every width, for tests on a CPU.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch

from dream3d.diffusion import alphas_cumprod

CHARS = string.ascii_lowercase + string.digits + ",.!?-'"  # CLIP splits at spaces


def sd15_unet_config(scale: float = 1.0) -> dict:
    """SD 1.5's UNet2DConditionModel: 4 latent channels, widths 320-1280, CLIP-L context."""
    width = [_w(c, scale) for c in (320, 640, 1280, 1280)]
    return dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=width,
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=_w(768, scale),
        attention_head_dim=8,
        norm_num_groups=_groups(width),
    )


def sd15_vae_config(scale: float = 1.0) -> dict:
    """SD's AutoencoderKL: 512 px images to 4 x 64 x 64 latents (factor 8)."""
    width = [_w(c, scale) for c in (128, 256, 512, 512)]
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=width,
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=_groups(width),
        sample_size=512,
    )


def if_unet_config(scale: float = 1.0) -> dict:
    """IF-I-XL's UNet: 64 px pixels in, eps and a variance range out (6 channels), widths
    704-2816, T5-XXL (4096) context through a text projection and attention pooling."""
    base = _w(704, scale)
    width = [base * m for m in (1, 2, 3, 4)]
    return dict(
        sample_size=64,
        in_channels=3,
        out_channels=6,
        block_out_channels=width,
        layers_per_block=3,
        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        cross_attention_dim=width[-1],
        attention_head_dim=64 if scale == 1 else 8,  # channels per head (IF's blocks)
        encoder_hid_dim=_w(4096, scale),
        encoder_hid_dim_type="text_proj",
        addition_embed_type="text",
        act_fn="gelu",
        resnet_time_scale_shift="scale_shift",
        cross_attention_norm="group_norm",
        norm_num_groups=_groups(width),
    )


def _w(width: int, scale: float) -> int:
    """A width scaled, kept a multiple of 8 (attention heads and group norms divide it)."""
    return max(8, round(width * scale / 8) * 8)


def _groups(widths) -> int:
    """32 groups (the models' own) where the widths allow, else the largest that divides."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if all(w % g == 0 for w in widths))


def _cast(model, dtype):
    """A diffusers model in ``dtype``, without its note that ``from_pretrained`` casts better
    (it keeps no module in float32 for these)."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return model.to(dtype)
    finally:
        logging.set_verbosity(level)


def char_vocab() -> list[str]:
    """CLIP-style tokens: start, end, and one token per character (word-final or not)."""
    return ["<|startoftext|>", "<|endoftext|>", *CHARS, *(c + "</w>" for c in CHARS)]


def char_clip_tokenizer(folder: Path, max_length: int = 77):
    """A CLIPTokenizer over ``char_vocab`` (a token per character, no merges) in ``folder``."""
    from transformers import CLIPTokenizer

    vocab = char_vocab()
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length
    )


def random_sd15(device="cuda", dtype=torch.float16, scale: float = 1.0, image_size: int = 512):
    """A StableDiffusionTeacher shaped as SD 1.5 (UNet, VAE at ``image_size`` px; a one-layer
    CLIP-L-wide text encoder), random weights, eps-prediction on SD's scaled-linear schedule."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dream3d.teachers.stable_diffusion import LatentEps, StableDiffusionTeacher

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = char_clip_tokenizer(Path(folder))
    width = _w(768, scale)
    text = CLIPTextConfig(
        vocab_size=len(char_vocab()),
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=1,
        num_attention_heads=max(1, width // 64),
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    with torch.device(device):
        unet = _cast(UNet2DConditionModel(**sd15_unet_config(scale)), dtype)
        vae = _cast(AutoencoderKL(**sd15_vae_config(scale)), dtype)
        encoder = CLIPTextModel(text).to(dtype)
    abar = alphas_cumprod("scaled_linear", 1000)
    denoiser = LatentEps(unet, abar, "epsilon")
    teacher = StableDiffusionTeacher(denoiser, vae, encoder, tokenizer, image_size)
    return teacher.eval()


def random_if(device="cuda", dtype=torch.float16, scale: float = 1.0):
    """An IFTeacher shaped as IF-I-XL (its UNet at 64 px; a one-layer T5 encoder as wide as
    T5-XXL), random weights, eps and a learned variance range on the squaredcos schedule."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    from dream3d.teachers.deepfloyd import IFTeacher, PixelEps

    with tempfile.TemporaryDirectory() as folder:
        tokenizer = char_clip_tokenizer(Path(folder))
    width = _w(4096, scale)
    text = T5Config(
        vocab_size=len(char_vocab()),
        d_model=width,
        d_kv=64,
        d_ff=_w(10240, scale),
        num_layers=1,
        num_heads=max(1, width // 64),
        pad_token_id=1,
        eos_token_id=1,
    )
    with torch.device(device):
        unet = _cast(UNet2DConditionModel(**if_unet_config(scale)), dtype)
        encoder = T5EncoderModel(text).to(dtype)
    abar = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    denoiser = PixelEps(unet, abar, "epsilon", "learned_range")
    return IFTeacher(denoiser, encoder, tokenizer).eval()
