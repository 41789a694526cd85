import shutil

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """Tests marked requires_cuda really skip where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "requires_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A Stable Diffusion pipeline folder with random, tiny parts (no download): 32 px images,
    8x8x4 latents, a 16-wide CLIP text encoder over a character vocabulary."""
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from dream3d.teachers.shaped import char_clip_tokenizer, char_vocab

    folder = tmp_path_factory.mktemp("tiny-sd")
    torch.manual_seed(0)
    tokenizer = char_clip_tokenizer(folder, max_length=32)  # a token per character
    text = CLIPTextConfig(
        vocab_size=len(char_vocab()), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
        pad_token_id=1,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(8, 8, 8), latent_channels=4, norm_num_groups=4, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    )  # fmt: skip
    scheduler = DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(text), tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder / "pipe")
    return folder / "pipe"


@pytest.fixture()
def hub_cache(tiny_sd, tmp_path, monkeypatch):
    """A Hugging Face cache holding the tiny pipeline as the Hub model "tiny/sd"."""
    repo = tmp_path / "hub" / "models--tiny--sd"
    shutil.copytree(tiny_sd, repo / "snapshots" / "0123abc")
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo / "snapshots" / "0123abc"
