import math

import torch
import torch.nn.functional as F

from dream3d.cameras import Cameras
from scenes.catalogue import BACKGROUND, COLOURS
from scenes.render import AMBIENT, DIFFUSE, LIGHT, render, render_with_mask
from scenes.truth import silhouette


def _cameras(azimuth, elevation=0.0, radius=2.8):
    """Cameras at the given azimuths (degrees), one shared elevation and radius."""
    az = torch.tensor(azimuth, dtype=torch.float32)
    return Cameras(az, torch.full_like(az, elevation), torch.full_like(az, radius), 40.0)


def test_sphere_from_the_front_is_a_centred_disc_of_the_projected_size():
    size = 64
    _, mask = render_with_mask(["sphere"], ["red"], _cameras([0.0]), size, supersample=1)
    mask = mask[0, 0]  # (H, W)
    half_angle = math.asin(0.7 / 2.8)
    radius_px = math.tan(half_angle) / math.tan(math.radians(20)) * size / 2
    assert abs(mask.sum().item() / (math.pi * radius_px**2) - 1) < 0.02
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert abs(rows.float().mean() - 31.5) < 0.05 and abs(cols.float().mean() - 31.5) < 0.05
    assert torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.T)


def test_background_is_exact_and_lit_centre_matches_hand_shading():
    images, masks = render_with_mask(["sphere"], ["red"], _cameras([0.0]), 33)
    background = images[0].permute(1, 2, 0)[masks[0, 0] == 0]  # (N, 3)
    assert len(background) > 300 and torch.equal(
        background, torch.tensor([BACKGROUND] * len(background))
    )
    # odd size: the centre pixel's ray runs along -x and meets the sphere where n = (1, 0, 0)
    lambert = LIGHT[0] / math.sqrt(sum(c * c for c in LIGHT))  # n . l = 0.5 / 1.00623
    expected = torch.tensor(COLOURS["red"]) * (AMBIENT + DIFFUSE * lambert)  # 0.698 * albedo
    assert torch.allclose(images[0, :, 16, 16], expected, atol=2e-3)
    assert abs(AMBIENT + DIFFUSE * lambert - 0.69814) < 1e-4


def test_deterministic_and_mixed_batches_match_single_renders():
    cams = _cameras([10.0, 100.0, -150.0], elevation=20.0)
    shapes, colours = ["mug", "chair-arms", "mug"], ["green", "blue", "pink"]
    a, b = render(shapes, colours, cams), render(shapes, colours, cams)
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    one = render(["chair-arms"], ["blue"], _cameras([100.0], elevation=20.0))
    assert torch.equal(a[1:2], one)
    assert a.min() >= 0 and a.max() <= 1


def test_chairs_differ_from_the_front():
    masks = silhouette(["chair-plain", "chair-arms", "chair-tall"], _cameras([0.0] * 3, 10.0))
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        assert (masks[i] ^ masks[j]).float().mean() >= 0.05


def test_orientation_mug_handle_and_chair_back():
    cams = _cameras([0.0, 90.0])
    masks = silhouette(["mug", "chair-tall"], cams, 32)[:, 0].float()  # (2, H, W)
    cols = torch.arange(32.0)
    # from the front the handle (+y, the object's left) shows on the image's right
    assert (masks[0] * cols).sum() / masks[0].sum() > 16.0  # the body alone: 15.5
    # from the +y side, image right is -x: the tall back's top rows lie in the right half
    top = masks[1, :8]
    assert top.sum() > 0 and ((top * cols).sum() / top.sum()) > 16


def test_supersampled_mask_is_coverage_of_the_hard_mask():
    cams = _cameras([30.0], 25.0)
    _, soft = render_with_mask(["lamp"], ["yellow"], cams, 16, supersample=2)
    hard = silhouette("lamp", cams, 32).float()
    assert torch.equal(soft, F.avg_pool2d(hard, 2))
