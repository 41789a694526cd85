import dataclasses

import pytest
import torch
from torch import nn

from dream3d.cameras import VIEWS, pose_features, sample_cameras
from dream3d.pipelines.world import all_captions, load_camera_tiny
from generators.nerf.amortised import (
    TriplaneConfig,
    TriplaneField,
    TriplaneGenerator,
    held_out_prompts,
    split_caption,
)
from generators.nerf.field import DensityConfig
from scenes.catalogue import COLOURS, OBJECTS
from scenes.prompts import catalogue_prompts, parse_prompt


@pytest.fixture(scope="module")
def teacher():
    return load_camera_tiny()


@pytest.fixture(scope="module")
def small():
    """A small generator config: 8-pixel images, 16-point rays, 8x8 planes."""
    render = dataclasses.replace(TriplaneConfig().render, samples=16)
    return TriplaneConfig(z_dim=4, width=32, channels=4, resolution=8, size=8, render=render)


def test_held_out_prompts_pair_seen_objects_with_seen_colours():
    held = held_out_prompts()
    specs = [parse_prompt(p) for p in held]
    assert len(held) == len(OBJECTS) == 12 and set(held) <= set(catalogue_prompts())
    assert sorted(s.object for s in specs) == sorted(OBJECTS)  # one colour per object
    assert {s.colour for s in specs} == set(COLOURS)  # every colour, none colourless
    kept = [parse_prompt(p) for p in catalogue_prompts() if p not in held]
    for s in specs:  # training sees the object in another colour, and the colour on another
        assert any(k.object == s.object and k.colour for k in kept)
        assert any(k.colour == s.colour and k.object != s.object for k in kept)


def test_split_caption_reads_the_view_word():
    assert split_caption("a red chair, side view") == ("a red chair", "side")
    assert split_caption("an orange cone, overhead view") == ("an orange cone", "overhead")
    with pytest.raises(ValueError, match="not a view caption"):
        split_caption("a red chair")


def test_a_point_reads_the_xy_xz_and_yz_planes_bilinearly():
    """Planes that hold their own coordinates: xy holds x (along its width), xz holds z
    (along its height), yz holds 2y (along its width). Bilinear look-ups of linear functions
    are exact, so the head (channel 0 -> raw density, weight 1) reads x + z + 2y; the blob
    adds 10 (1 - |p| / 0.5)."""
    r = 5
    ramp = torch.linspace(-1, 1, r)
    planes = torch.zeros(3, 1, r, r)
    planes[0, 0] = ramp[None, :].expand(r, r)  # xy plane: value = its first coordinate, x
    planes[1, 0] = ramp[:, None].expand(r, r)  # xz plane: value = its second coordinate, z
    planes[2, 0] = 2 * ramp[None, :].expand(r, r)  # yz plane: value = 2 x its first, 2y
    head = nn.Linear(1, 4)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[0, 0] = 1.0
    field = TriplaneField(planes, head, DensityConfig(normals="finite"))
    p = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    raw, albedo = field.raw(p)
    blob = 10.0 * (1 - p.norm(dim=-1) / 0.5)
    expected = p[:, 0] + p[:, 2] + 2 * p[:, 1] + blob
    torch.testing.assert_close(raw, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(albedo, torch.full_like(albedo, 0.5))  # sigmoid(0)
    # finite normals: -grad raw / |grad raw|, grad = (1, 2, 1) - 20 p / |p|
    grad = torch.tensor([1.0, 2.0, 1.0]) - 20 * p / p.norm(dim=-1, keepdim=True)
    normals = field.normals(p)
    keep = p.norm(dim=-1) > 0.1  # away from the blob's kink at the origin
    torch.testing.assert_close(
        normals[keep], -torch.nn.functional.normalize(grad, dim=-1)[keep], atol=2e-3, rtol=0
    )


def test_the_generator_learns_the_held_in_prompts_only(teacher, small):
    generator = TriplaneGenerator(small, teacher, all_captions())
    held = set(held_out_prompts())
    assert len(generator.prompts) == 108 - 12 and not held & set(generator.prompts)
    assert len(generator.captions) == 4 * 96
    everything = TriplaneGenerator(
        dataclasses.replace(small, holdout=False), teacher, all_captions()
    )
    assert len(everything.prompts) == 108
    with pytest.raises(ValueError, match="no caption left"):
        TriplaneGenerator(small, teacher, ["a red chair, side view"])


def test_a_sample_is_objects_rendered_from_their_cameras(teacher, small):
    """n objects x views renders; each render's caption is its object's prompt and its own
    camera's view word, its pose that camera's; the same seed draws the same batch."""
    generator = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    s = generator.sample(3, torch.Generator().manual_seed(1))
    assert s.x.shape == (3 * 2, 3, 8, 8) and s.x.min() >= -1 and s.x.max() <= 1
    prompts, views = zip(*map(split_caption, s.info["captions"]))
    assert list(views) == s.info["views"] and set(views) <= set(VIEWS)
    assert list(prompts) == [p for p in s.info["prompts"] for _ in range(2)]
    assert not set(prompts) & set(held_out_prompts())
    # the cameras are the generator's draws: redraw them from the same stream
    rng = torch.Generator().manual_seed(1)
    torch.randint(len(generator.prompts), (3,), generator=rng)
    torch.randn(3, small.z_dim, generator=rng)
    cameras = sample_cameras(6, rng, small.cameras)
    torch.testing.assert_close(s.info["pose"], pose_features(cameras))
    assert cameras.views(small.cameras) == s.info["views"]
    again = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    torch.testing.assert_close(again.sample(3, torch.Generator().manual_seed(1)).x, s.x)


def test_the_guidance_gradient_reaches_the_mapping_network(teacher, small):
    generator = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    s = generator.sample(2, torch.Generator().manual_seed(0))
    (s.x.square().sum() + s.aux_loss).backward()
    for name in ("mapping", "convs", "head"):
        grads = [p.grad for p in getattr(generator, name).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name


def test_an_instance_is_the_generators_own_field(teacher, small):
    """instance(prompt, z) holds the planes of (prompt, z): its density at any point is the
    generator's field of the same planes; another z gives another object."""
    generator = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    with torch.no_grad():
        for p in generator.mapping.parameters():
            p.add_(0.1 * torch.randn_like(p))  # an initial net is nearly z-blind
    z = generator.noise(2, torch.Generator().manual_seed(3))
    points = torch.rand(64, 3, generator=torch.Generator().manual_seed(4)) * 2 - 1
    nerf = generator.instance("a red chair", z[0])
    with torch.no_grad():
        planes = generator.planes(["a red chair"], z[:1])[0]
        torch.testing.assert_close(
            nerf.field.density(points), generator.field(planes).density(points)
        )
        other = generator.instance("a red chair", z[1]).field.density(points)
    assert (other - nerf.field.density(points)).abs().max() > 1e-3
    assert nerf.occupancy is not None and 0 < nerf.occupancy.mask.float().mean() <= 1


def test_draw_renders_any_catalogue_caption_the_same_for_the_same_seed(teacher, small):
    generator = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    captions = ["a red chair, front view", "a mug, overhead view"]  # one held out
    a = generator.draw(captions, torch.Generator().manual_seed(5))
    b = generator.draw(captions, torch.Generator().manual_seed(5))
    assert a.shape == (2, 3, 8, 8)
    torch.testing.assert_close(a, b)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="power of 2"):
        TriplaneConfig(resolution=24)
    with pytest.raises(ValueError, match="views must be >= 1"):
        TriplaneConfig(views=0)
    with pytest.raises(ValueError, match="finite normals"):
        TriplaneConfig(field=DensityConfig(normals="autograd"))


def test_every_point_reads_the_objects_code_unchanged(teacher, small):
    """The code planes are constant and hold a third of the code each: their sum at any
    point, what the head reads after the C plane features, is the code itself."""
    generator = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    z = generator.noise(1, torch.Generator().manual_seed(2))
    with torch.no_grad():
        planes = generator.planes(["a chair"], z)[0]  # (3, C + code, R, R)
        h = generator.mapping(torch.cat([generator.embed(["a chair"]), z], -1))[0]
    code = h[-small.code :]
    summed = planes[:, small.channels :].sum(0)  # (code, R, R)
    assert planes.shape == (3, small.channels + small.code, 8, 8)
    torch.testing.assert_close(summed, code[:, None, None].expand_as(summed))


def test_the_caption_embeddings_are_standardised_over_the_catalogue(teacher, small):
    generator = TriplaneGenerator(small, teacher, all_captions(), seed=0)
    e = generator.embed(catalogue_prompts())
    torch.testing.assert_close(e.mean(0), torch.zeros(e.shape[1]), atol=1e-4, rtol=0)
    moving = generator.text_std > 1e-4  # a few dimensions are the same for every prompt
    assert moving.sum() > 300
    torch.testing.assert_close(e.std(0)[moving], torch.ones(int(moving.sum())), atol=1e-4, rtol=0)
    assert e[:, ~moving].abs().max() < 1e-3
    raw = teacher.encode_prompt(["a red chair"])[0, 0].float()
    expected = (raw - generator.text_mean) / generator.text_std
    torch.testing.assert_close(generator.embed(["a red chair"])[0], expected)
