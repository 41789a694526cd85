import json
import math
import shutil
import string

import pytest
import torch

from dream3d.diffusion import coefficients
from dream3d.teachers.base import Teacher
from dream3d.teachers.deepfloyd import (
    IFTeacher,
    PixelEps,
    _variant,
    cached_if_models,
    locate_if,
)
from dream3d.teachers.stable_diffusion import cached_models
from tests.fast_run import FAST_RUN

WORDS = ["a", "red", "blue", "chair", "cube", "mug", "front", "side", "back", "overhead", "view"]


@pytest.fixture(scope="session")
def tiny_if(tmp_path_factory):
    """An IF stage I pipeline folder with random, tiny parts (no download): 16 px images, a UNet
    shaped like IF-I's (6 output channels, T5 states projected by encoder_hid_proj, text added to
    the time embedding), a 16-wide T5 encoder over a word-and-character unigram vocabulary."""
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    torch.manual_seed(0)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -1.0) for w in WORDS]
    vocab += [(c, -5.0) for c in string.ascii_lowercase + string.digits + ",.!?-'"]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    text = T5Config(
        vocab_size=len(vocab), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=3, out_channels=6, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        cross_attention_dim=32, encoder_hid_dim=16, attention_head_dim=4,
        addition_embed_type="text", addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn="gelu",
    )  # fmt: skip
    scheduler = DDPMScheduler(
        beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
        variance_type="learned_range", thresholding=True, dynamic_thresholding_ratio=0.95,
        sample_max_value=1.0,
    )  # fmt: skip
    pipe = IFPipeline(
        tokenizer=tokenizer, text_encoder=T5EncoderModel(text), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, watermarker=None,
        requires_safety_checker=False,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-if") / "pipe"
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teacher(tiny_if):
    return IFTeacher.load(str(tiny_if))


@pytest.fixture()
def if_hub_cache(hub_cache, tiny_if):
    """The Hugging Face cache of ``hub_cache`` (the Hub model "tiny/sd"), plus "tiny/if"."""
    repo = hub_cache.parents[2] / "models--tiny--if"
    shutil.copytree(tiny_if, repo / "snapshots" / "4567def")
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("4567def")
    return repo / "snapshots" / "4567def"


def test_eps_is_the_first_three_of_the_unets_six_channels(teacher):
    assert isinstance(teacher, Teacher) and teacher.fake_score == "lora"
    assert teacher.image_size == 16 and teacher.denoiser.prediction == "eps"
    unet = teacher.denoiser.unet
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([5, 400, 990])
    cond = teacher.encode_prompt(["a red cube", "a blue mug", ""])
    with torch.no_grad():
        out = unet(x, t, encoder_hidden_states=cond).sample
        eps = teacher.eps(x, t, cond)
    assert out.shape == (3, 6, 16, 16) and eps.shape == (3, 3, 16, 16)
    assert torch.equal(eps, out[:, :3])
    assert not torch.allclose(out[:, :3], out[:, 3:], atol=1e-3)  # the variance half is cut
    assert not any(p.requires_grad for p in teacher.parameters())


def test_prompts_encode_as_the_if_pipeline_encodes_them(teacher, tiny_if):
    from diffusers import IFPipeline

    pipe = IFPipeline.from_pretrained(tiny_if)
    prompts = ["a red chair, side view", "a blue cube"]
    with torch.no_grad():
        want, want_null = pipe.encode_prompt(prompts, negative_prompt=None, clean_caption=False)
        tokens = teacher.tokenizer(
            prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
        )
        masked = teacher.text_encoder(tokens.input_ids, attention_mask=tokens.attention_mask)[0]
        unmasked = teacher.text_encoder(tokens.input_ids)[0]
    cond = teacher.encode_prompt(prompts)
    assert cond.shape == (2, 77, 16) and tokens.attention_mask.sum(1).tolist() == [7, 4]
    assert torch.allclose(cond, masked, atol=1e-6) and torch.allclose(cond, want, atol=1e-6)
    assert not torch.allclose(cond, unmasked, atol=1e-3)  # the mask reaches the encoder
    null = teacher.encode_prompt([""])  # the unconditional branch: "" encoded the same way
    assert torch.allclose(null, want_null[:1], atol=1e-6)
    assert torch.allclose(teacher.encode_prompt([" A Red Chair, SIDE view "]), cond[:1])
    assert {"a red chair, side view", "a blue cube", ""} <= set(teacher._prompts)


def test_a_prompt_longer_than_77_tokens_is_cut_at_77(teacher):
    long = " ".join(["a red chair"] * 40)  # 120 words
    cond = teacher.encode_prompt([long, long + " side view"])
    assert cond.shape == (2, 77, 16) and torch.equal(cond[0], cond[1])


def test_no_cond_means_the_empty_prompt(teacher):
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 700])
    with torch.no_grad():
        null = teacher.encode_prompt([""]).expand(2, -1, -1)
        assert torch.equal(teacher.eps(x, t, None), teacher.eps(x, t, null))
        cube = teacher.eps(x, t, teacher.encode_prompt(["a cube"] * 2))
        assert not torch.allclose(cube, teacher.eps(x, t, null), atol=1e-6)


def test_renders_are_resized_to_the_unet_differentiably(teacher):
    rgb = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    x = teacher.encode_images(rgb)
    assert x.shape == (2, 3, 16, 16)
    x.sum().backward()  # each output pixel is a weighted mean: the weights sum to one
    assert rgb.grad.min() > 0 and math.isclose(rgb.grad.sum().item(), 2 * 3 * 16 * 16, rel_tol=1e-5)
    grey = torch.full((1, 3, 32, 32), 0.25)
    assert torch.allclose(teacher.encode_images(grey), torch.full((1, 3, 16, 16), 0.25))
    small = torch.rand(1, 3, 8, 8) * 2 - 1  # upsampled
    assert teacher.encode_images(small).shape == (1, 3, 16, 16)
    native = torch.rand(2, 3, 16, 16) * 2 - 1
    assert teacher.encode_images(native) is native  # the identity at the UNet's side
    assert torch.equal(teacher.decode_images(native * 3), (native * 3).clamp(-1, 1))
    assert teacher.decode_images(native, size=32).shape == (2, 3, 32, 32)


def test_the_schedule_is_the_cosine_one_capped_at_0999(teacher):
    """alpha_bar(t) = cos((t/T + s)/(1 + s) pi/2)^2, s = 0.008; beta_i = min(1 - ab(i+1)/ab(i),
    0.999) (Nichol & Dhariwal 2021, diffusers' squaredcos_cap_v2)."""

    def f(i):
        return math.cos((i / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    abar, prod = [], 1.0
    for i in range(1000):
        prod *= 1 - min(1 - f(i + 1) / f(i), 0.999)
        abar.append(prod)
    expected = torch.tensor(abar, dtype=torch.float64)
    assert teacher.alphas_cumprod.dtype == torch.float64 and teacher.alphas_cumprod.shape == (1000,)
    assert torch.allclose(teacher.alphas_cumprod, expected, rtol=1e-5, atol=1e-9)
    assert 1 - teacher.alphas_cumprod[-1] / teacher.alphas_cumprod[-2] == pytest.approx(0.999)


def test_v_and_x0_predictions_are_turned_into_eps(teacher):
    unet, abar = teacher.denoiser.unet, teacher.alphas_cumprod
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([30, 600])
    cond = teacher.encode_prompt(["a cube", "a mug"])
    with torch.no_grad():
        pred = unet(x, t, encoder_hidden_states=cond).sample[:, :3]
        a, s = coefficients(abar, t, x)
        v_eps = PixelEps(unet, abar, "v_prediction", "learned_range").eps(x, t, cond)
        x0_eps = PixelEps(unet, abar, "sample", "learned_range").eps(x, t, cond)
    assert torch.allclose(v_eps, a * pred + s * x, atol=1e-6)
    assert torch.allclose(x0_eps, (x - a * pred) / s, atol=1e-5)
    with pytest.raises(ValueError, match="should output 3 channels, not 6"):
        PixelEps(unet, abar, "epsilon", "fixed_small")


def test_ikl_fits_a_lora_of_the_if_unet_and_leaves_the_teacher_as_it_was(teacher):
    from dream3d.guidance import FAKE_SCORES, make_guidance

    if "lora" not in FAKE_SCORES:
        pytest.skip("the LoRA fake score (FAKE_SCORES['lora']) is not in this tree yet")
    ikl = make_guidance("ikl", teacher, fake_lr=1e-2)  # fake auto: the teacher's fake_score
    assert isinstance(ikl.fake, FAKE_SCORES["lora"])
    x0 = teacher.encode_images(torch.rand(2, 3, 32, 32) * 2 - 1)
    cond = teacher.encode_prompt(["a red cube, front view", "a red cube, side view"])
    x_t, t = torch.randn(2, 3, 16, 16), torch.tensor([200, 600])
    with torch.no_grad():
        before = teacher.eps(x_t, t, cond)
        assert torch.equal(ikl.fake.eps(x_t, t, cond), before)  # B = 0: the fake starts as q
    logs = ikl.update_fake(x0.detach(), cond, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(torch.as_tensor(logs["fake_loss"]))
    with torch.no_grad():
        assert not torch.allclose(ikl.fake.eps(x_t, t, cond), before, atol=1e-6)
        assert torch.equal(teacher.eps(x_t, t, cond), before)


def test_a_cached_hub_model_loads_offline_and_is_told_apart_from_sd(if_hub_cache):
    from dream3d.app import teacher_choices, teacher_source
    from dream3d.pipelines.world import IFSource, SDSource

    assert cached_if_models() == ["tiny/if"] and cached_models() == ["tiny/sd"]
    assert locate_if("tiny/if") == if_hub_cache
    teacher = IFTeacher.load("tiny/if")
    x = teacher.encode_images(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert teacher.eps(x, torch.tensor([10, 900])).shape == (2, 3, 16, 16)
    assert IFSource.cached() == ["tiny/if"] and teacher_choices()[-2:] == ["tiny/sd", "tiny/if"]
    assert teacher_source("tiny/if") == {"name": "if", "model": "tiny/if"}
    assert teacher_source("tiny/sd") == {"name": "sd", "model": "tiny/sd"}
    with pytest.raises(ValueError, match="tiny/sd is a StableDiffusionPipeline, not a DeepFloyd"):
        IFSource.locate("tiny/sd")
    with pytest.raises(ValueError, match="tiny/if is a DeepFloyd IF pipeline: use --teacher if"):
        SDSource.locate("tiny/if")


def test_a_folder_missing_a_part_is_one_clear_error(tiny_if, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_if, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ValueError, match="is not a complete IF pipeline"):
        IFTeacher.load(str(broken))
    with pytest.raises(ValueError, match="not a diffusers pipeline folder"):
        locate_if(str(tmp_path))


def test_fp16_weight_files_are_used_where_they_suit(tmp_path):
    both, half = tmp_path / "both", tmp_path / "half"
    both.mkdir(), half.mkdir()
    for name in ("model.safetensors", "model.fp16.safetensors", "config.json"):
        (both / name).touch()
    for name in ("model.fp16-00001-of-00002.safetensors", "model.fp16-00002-of-00002.safetensors"):
        (half / name).touch()
    assert _variant(both, torch.float16) == "fp16" and _variant(both, torch.float32) is None
    assert _variant(half, torch.float32) == "fp16"  # the only weights there
    assert _variant(tmp_path / "none", torch.float16) is None


def test_dream3d_run_with_the_if_teacher_writes_its_metrics(tiny_if, tmp_path):
    from dream3d.cli.main import main

    preset = tmp_path / "fast.yaml"
    preset.write_text(json.dumps(FAST_RUN))
    out = tmp_path / "out"
    args = ["run", "--prompt", "a red cube", "--teacher", "if", "--model", str(tiny_if)]
    args += ["--guidance", "sds", "--steps", "2", "--preset", str(preset), "--out", str(out)]
    assert main(args + ["--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"] == "if" and metrics["steps"] == 2
    assert 0 <= metrics["truth"]["silhouette_iou"] <= 1
    assert f"model: {tiny_if}" in (out / "config.yaml").read_text()


def test_no_if_model_on_this_machine_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    from dream3d.cli.main import main

    empty = tmp_path / "empty-hub"
    empty.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(empty))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(empty))
    args = ["run", "--prompt", "a chair", "--teacher", "if", "--out", str(tmp_path / "out")]
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dream3d: error: ")
    assert "'DeepFloyd/IF-I-XL-v1.0' is not on this machine" in err
    assert "give the path of a local diffusers folder" in err and "gated" in err
    assert "Traceback" not in err
