import math

import pytest
import torch

from dream3d.cameras import Cameras
from generators.nerf.field import FieldConfig, HashGridConfig, NeRFField
from generators.nerf.render import (
    OccGridConfig,
    RegulariserConfig,
    RenderConfig,
    ShadingConfig,
    composite,
    distortion_terms,
    march_step,
    normal_smoothness,
    occupancy_grid,
    opaque_loss,
    packed_exclusive_sum,
    pick_shading,
    ray_bounds,
    ray_box,
    ray_sphere,
    regularisers,
    render_image,
    render_rays,
    resolve_backend,
    shade,
    sparsity_loss,
    stratified_samples,
    update_occupancy_grid,
    volume_weights,
)
from scenes.render import shade as scene_shade

FRONT = Cameras(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.8]), 40.0)


def two_sample_field(points):
    """sigma = 1, red for x < 0; sigma = 2, blue for x >= 0."""
    back = points[:, 0] < 0
    sigma = torch.where(back, 1.0, 2.0)
    red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    return sigma, torch.where(back[:, None], red, blue)


def test_two_sample_ray_by_hand():
    # sigma = [1, 2], delta = [0.5, 0.5]: alpha = [1 - e^-0.5, 1 - e^-1] = [0.393469, 0.632121],
    # T = [1, e^-0.5 = 0.606531], w = [0.393469, 0.606531 * 0.632121 = 0.383400],
    # opacity = 1 - e^-1.5 = 0.776870; t = [0.25, 0.75]: depth = 0.098367 + 0.287550 = 0.385918
    w, trans, alpha = volume_weights(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(alpha, torch.tensor([[0.393469, 0.632121]]), atol=1e-6)
    assert torch.allclose(trans, torch.tensor([[1.0, 0.606531]]), atol=1e-6)
    assert torch.allclose(w, torch.tensor([[0.393469, 0.383400]]), atol=1e-6)
    # the same ray through render_rays: it enters the ball of radius 0.5 at t = 0, leaves at 1
    config = RenderConfig(samples=2, radius=0.5, jitter=False, backend="torch")
    o, d = torch.tensor([[-0.5, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    out = render_rays(two_sample_field, o, d, config, background=torch.tensor([0.0, 1.0, 0.0]))
    # rgb = 0.393469 red + 0.383400 blue + (1 - 0.776870) green
    assert torch.allclose(out["rgb"], torch.tensor([[0.393469, 0.223130, 0.383400]]), atol=1e-6)
    assert out["opacity"].item() == pytest.approx(0.776870, abs=1e-6)
    assert out["depth"].item() == pytest.approx(0.385918, abs=1e-6)
    # distortion: w_1 w_2 |0.25 - 0.75| * 2 + (w_1^2 + w_2^2) 0.5 / 3 = 0.150856 + 0.050302
    assert out["distortion"].item() == pytest.approx(0.201158, abs=1e-6)


def test_distortion_equals_the_pairwise_sum_and_prefers_surfaces():
    g = torch.Generator().manual_seed(0)
    edges = torch.sort(torch.rand(5, 17, generator=g), -1).values
    t0, t1 = edges[:, :-1], edges[:, 1:]
    w = volume_weights(torch.rand(5, 16, generator=g) * 8, t1 - t0)[0]
    m = (t0 + t1) / 2
    pairs = (w[:, :, None] * w[:, None] * (m[:, :, None] - m[:, None]).abs()).sum((1, 2))
    brute = pairs + (w**2 * (t1 - t0)).sum(-1) / 3
    before = torch.cumsum(w, -1) - w, torch.cumsum(w * m, -1) - w * m
    fast = (w * distortion_terms(m, t1 - t0, w, *before)).sum(-1)
    assert torch.allclose(fast, brute, atol=1e-6)
    # the packed path's prefix sums (rays of different lengths, as occupancy culling leaves)
    keep = torch.rand(5, 16, generator=g) < 0.7
    rays = torch.arange(5)[:, None].expand(5, 16)[keep]
    packed = packed_exclusive_sum(w[keep], rays, 5)
    assert torch.allclose(packed, (torch.cumsum(w * keep, -1) - w)[keep], atol=1e-6)
    # the same opacity as one thin surface or as fog spread along the ray
    o, d = torch.tensor([[-3.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    config = RenderConfig(samples=64, jitter=False, backend="torch")

    def slab(width):
        def field(points):
            inside = points[:, 0].abs() < width / 2
            return torch.where(inside, 3.0 / width, 0.0), torch.ones(len(points), 3)

        return render_rays(field, o, d, config)

    thin, fog = slab(0.125), slab(1.5)
    assert thin["opacity"].item() == pytest.approx(fog["opacity"].item(), abs=1e-3)
    assert thin["distortion"].item() < 0.05 < 0.2 < fog["distortion"].item()


def test_ray_bounds_by_hand():
    o = torch.tensor([[-3.0, 0.0, 0.0], [-3.0, 2.0, 0.0], [0.0, 0.0, 0.0], [-3.0, 0.5, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3)
    near, far = ray_sphere(o, d, 1.0)  # hit, miss, inside, off-centre: half chord sqrt(0.75)
    h = math.sqrt(0.75)
    assert torch.allclose(near, torch.tensor([2.0, 0.0, 0.0, 3 - h]))
    assert torch.allclose(far, torch.tensor([4.0, 0.0, 1.0, 3 + h]))
    near, far = ray_box(o, d, 1.0)
    assert torch.allclose(near, torch.tensor([2.0, 0.0, 0.0, 2.0]))
    assert torch.allclose(far, torch.tensor([4.0, 0.0, 1.0, 4.0]))
    # the configured bounds pick between them; radius 2 (the box's half side): a ray along
    # the box's diagonal plane enters at x = -2 and leaves at x = 2, the ball's chord is shorter
    o2, d2 = torch.tensor([[-3.0, 1.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    for bounds, chord in (("box", (1.0, 5.0)), ("sphere", (3 - math.sqrt(3), 3 + math.sqrt(3)))):
        near, far = ray_bounds(o2, d2, RenderConfig(radius=2.0, bounds=bounds))
        assert torch.allclose(torch.cat([near, far]), torch.tensor(chord))


def test_the_packed_march_step_is_the_central_rays_bin():
    """The packed path steps 2 radius / S: the width of a batched bin on a ray through the
    centre, whose chord is the diameter."""
    for radius, samples in ((1.0, 64), (2.0, 8), (0.5, 10)):
        config = RenderConfig(radius=radius, samples=samples)
        near, far = ray_sphere(
            torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0, 1]]), radius
        )
        _, t_ends, _ = stratified_samples(near, far, samples, jitter=False)
        assert march_step(config) == pytest.approx((t_ends[0, 0] - near[0]).item(), rel=1e-6)


def test_stratified_samples_are_seeded_and_stay_in_their_bins():
    near, far = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])  # second ray: empty
    draw = [
        stratified_samples(near, far, 4, True, torch.Generator().manual_seed(s)) for s in (0, 0, 1)
    ]
    (t0, t1, t), again, other = draw
    assert torch.equal(t, again[2]) and not torch.equal(t, other[2])
    assert torch.allclose(t0[0], torch.tensor([1.0, 1.5, 2.0, 2.5])) and (t1 - t0)[1].eq(0).all()
    assert ((t >= t0) & (t <= t1)).all()
    mid = stratified_samples(near, far, 4, jitter=False)[2]
    assert torch.allclose(mid[0], torch.tensor([1.25, 1.75, 2.25, 2.75]))


def test_nerfacc_batched_matches_the_reference():
    nerfacc = pytest.importorskip("nerfacc")
    g = torch.Generator().manual_seed(0)
    sigmas, deltas = torch.rand(64, 32, generator=g) * 5, torch.rand(64, 32, generator=g) * 0.1
    t_starts = torch.cumsum(deltas, -1) - deltas
    colours = torch.rand(64, 32, 3, generator=g)
    w, trans, alpha = volume_weights(sigmas, deltas)
    w_acc, trans_acc, alpha_acc = nerfacc.render_weight_from_density(
        t_starts, t_starts + deltas, sigmas
    )
    for ours, theirs in ((w, w_acc), (trans, trans_acc), (alpha, alpha_acc)):
        assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(
        composite(w, colours), nerfacc.accumulate_along_rays(w_acc, colours), atol=1e-5
    )
    # and whole renders of a field, with normals
    field, (o, d) = NeRFField(), (x.reshape(-1, 3) for x in FRONT.rays(8))
    outs = [
        render_rays(
            field.with_normals,
            o,
            d,
            RenderConfig(backend=b),
            "lambertian",
            generator=torch.Generator().manual_seed(0),
        )
        for b in ("torch", "nerfacc")
    ]
    for key in ("rgb", "opacity", "depth", "normals", "orientation"):
        assert torch.allclose(outs[0][key], outs[1][key], atol=1e-5), key
    # the second render did go through nerfacc: "nerfacc", and "auto" where it imports
    assert resolve_backend("nerfacc") == resolve_backend("auto") == "nerfacc"
    assert resolve_backend("torch") == "torch"


def test_shading_by_hand_and_the_toy_world_light():
    """rho (0.4 + 0.6 max(0, n.l)) with l = (0.5, 0.35, 0.8) / 1.006231, the toy world's light:
    a NeRF of the true shape and albedo shades as the ground-truth renders do."""
    up, side = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.8, -0.6, 0.0])
    light = torch.tensor([0.5, 0.35, 0.8]) / 1.006231
    normals = torch.stack([light, -light, side, up])
    # n.l = 1, -1 (lit by ambient alone), (0.4 - 0.21) / 1.006231 = 0.188823, 0.8 / 1.006231
    lambert = torch.tensor([1.0, 0.0, 0.188823, 0.795046])
    albedo = torch.tensor([0.5, 0.2, 1.0]).expand(4, 3)
    lit = shade(albedo, normals, "lambertian")
    expected = (0.4 + 0.6 * lambert)[:, None] * albedo  # rows 1.0, 0.4, 0.513294, 0.877028
    assert torch.allclose(lit, expected, atol=1e-5)
    assert torch.allclose(shade(albedo, normals, "textureless"), expected / albedo, atol=1e-5)
    truth = scene_shade(torch.ones(1, 1, 4, dtype=torch.bool), normals[None, None], albedo[:1])
    assert torch.allclose(truth[0, :, 0].T, lit, atol=1e-6)  # (3, 1, 4) -> (4, 3)
    below = ShadingConfig(light=(0.0, 0.0, -2.0), ambient=0.1)  # l = -z: only -light faces it
    lit_below = shade(albedo, normals, "textureless", below)[:, 0].tolist()
    assert lit_below == pytest.approx([0.1, 0.1 + 0.9 * 0.8 / 1.006231, 0.1, 0.1], abs=1e-5)
    assert torch.equal(shade(albedo, None, "albedo"), albedo)
    with pytest.raises(ValueError, match="normals"):
        shade(albedo, None, "lambertian")


def test_pick_shading_frequencies():
    g = torch.Generator().manual_seed(0)
    warmup = ShadingConfig().warmup  # 150 albedo-only steps
    assert {pick_shading(s, generator=g) for s in range(0, warmup)} == {"albedo"}
    assert pick_shading(warmup, ShadingConfig(albedo_prob=0.0), g) != "albedo"
    picks = [pick_shading(warmup, generator=g) for _ in range(4000)]
    freq = {mode: picks.count(mode) / len(picks) for mode in set(picks)}
    assert freq["albedo"] == pytest.approx(0.25, abs=0.03)
    assert freq["textureless"] == pytest.approx(0.375, abs=0.03)
    assert freq["lambertian"] == pytest.approx(0.375, abs=0.03)


def test_regularisers_by_hand():
    opacity = torch.tensor([0.0, 0.5])
    assert sparsity_loss(opacity).item() == pytest.approx((0.1 + math.sqrt(0.26)) / 2)
    assert opaque_loss(torch.tensor([0.5])).item() == pytest.approx(math.log(2))

    def facing_away(points):  # normals along +x, the ray's direction: max(0, n.d)^2 = 1
        return (
            torch.ones(len(points)),
            torch.ones(len(points), 3),
            torch.tensor([[1.0, 0.0, 0.0]]).expand(len(points), 3),
        )

    o, d = torch.tensor([[-3.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    out = render_rays(facing_away, o, d, RenderConfig(jitter=False, backend="torch"))
    assert out["orientation"].item() == pytest.approx(1 - math.exp(-2), abs=1e-6)
    for normal, facing in (((0.6, 0.8, 0.0), 0.36), ((-1.0, 0.0, 0.0), 0.0)):  # n.d = 0.6, -1

        def tilted(points, normal=normal):
            n = len(points)
            return torch.ones(n), torch.ones(n, 3), torch.tensor([normal]).expand(n, 3)

        tilt = render_rays(tilted, o, d, RenderConfig(jitter=False, backend="torch"))
        expected = facing * (1 - math.exp(-2))  # opacity times max(0, n.d)^2
        assert tilt["orientation"].item() == pytest.approx(expected, abs=1e-6)
    loss, logs = regularisers(out)
    assert set(logs) == {"sparsity", "opaque", "orient", "distortion"}
    assert loss.item() == pytest.approx(logs["sparsity"] + 10 * logs["orient"])


def test_render_image_of_the_initial_blob():
    field = NeRFField()
    config = RenderConfig(samples=32, chunk=100)
    with torch.no_grad():
        out = render_image(field, FRONT, 16, config, "lambertian", torch.Generator().manual_seed(0))
        again = render_image(
            field, FRONT, 16, config, "lambertian", torch.Generator().manual_seed(0)
        )
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "rgb": (1, 3, 16, 16),
        "opacity": (1, 1, 16, 16),
        "depth": (1, 1, 16, 16),
        "normals": (1, 3, 16, 16),
        "orientation": (1, 1, 16, 16),
        "distortion": (1, 1, 16, 16),
    }
    assert all(torch.equal(out[k], again[k]) for k in out)
    opacity = out["opacity"][0, 0]
    assert opacity[7:9, 7:9].min() > 0.98 and opacity[[0, 0, -1, -1], [0, -1, 0, -1]].max() < 0.01
    assert out["rgb"].min() >= 0 and out["rgb"].max() <= 1
    assert 2.0 < out["depth"][0, 0, 8, 8] < 2.8  # the blob's front is ~0.5 before the origin
    # backgrounds: one colour, one per view, one image per view
    rgb = [
        render_image(field, FRONT, 16, config, generator=torch.Generator(), background=bg)["rgb"]
        for bg in (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([[0.0, 1.0, 0.0]]))
    ]
    image = torch.zeros(1, 3, 16, 16)
    image[:, 1, :, :8] = 1  # green left half, black right half
    split = render_image(field, FRONT, 16, config, background=image)["rgb"]
    assert torch.equal(rgb[0], rgb[1]) and rgb[0][0, :, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert split[0, :, 0, 0].tolist() == [0.0, 1.0, 0.0] and split[0, :, 0, -1].eq(0).all()


def test_fitting_silhouettes_of_a_sphere():
    """Fit opacity to analytic silhouettes of an off-centre sphere; IoU on held-out views too."""
    centre, radius, size = torch.tensor([0.3, -0.25, 0.2]), 0.35, 16

    def silhouettes(cameras):
        o, d = (x.reshape(-1, 3) for x in cameras.rays(size))
        near, far = ray_sphere(o - centre, d, radius)
        return (far > near).float().reshape(-1, 1, size, size)

    def iou(opacity, mask):
        p, m = opacity > 0.5, mask > 0.5
        return ((p & m).sum() / (p | m).sum()).item()

    train = Cameras(
        torch.tensor([-180.0, -90, 0, 90]),
        torch.tensor([10.0, 40, -5, 60]),
        torch.full((4,), 2.8),
        40.0,
    )
    held = Cameras(
        torch.tensor([-45.0, 135.0]), torch.tensor([25.0, 30.0]), torch.full((2,), 2.8), 40.0
    )
    grid = HashGridConfig(levels=4, log2_table=12, max_resolution=64)
    field = NeRFField(FieldConfig(grid=grid))
    config = RenderConfig(samples=24, backend="torch")  # jittered, for training
    exact = RenderConfig(jitter=False, backend="torch")  # 64 bin midpoints, for scoring
    target, g = silhouettes(train), torch.Generator().manual_seed(0)
    with torch.no_grad():
        start = iou(render_image(field, train, size, exact)["opacity"], target)
    opt = torch.optim.Adam(field.parameters(), lr=0.03, betas=(0.9, 0.99), eps=1e-15)
    for _ in range(60):
        opacity = render_image(field, train, size, config, generator=g)["opacity"]
        loss = ((opacity - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fit = iou(render_image(field, train, size, exact)["opacity"], target)
        unseen = iou(render_image(field, held, size, exact)["opacity"], silhouettes(held))
    assert start < 0.35 and fit > 0.95 and unseen > 0.8  # measured: 0.28, 1.0, 0.87


def test_occupancy_grid_marks_the_blob():
    pytest.importorskip("nerfacc")  # the grid's update is plain torch: it runs on a CPU
    config = RenderConfig(grid=OccGridConfig(resolution=16, threshold=1e-5))
    estimator = occupancy_grid(config, "cpu")
    with torch.no_grad():
        update_occupancy_grid(estimator, NeRFField().density, step=0, config=config)
    occupied = estimator.binaries[0]  # (16, 16, 16) cells of [-1, 1]^3
    assert occupied[7:9, 7:9, 7:9].all() and not occupied[[0, 0, -1], [0, -1, -1], [0, 0, -1]].any()
    assert 0.05 < occupied.float().mean() < 0.5


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_packed_occupancy_grid_rendering_matches_the_cpu_path():
    """Tolerances: culling cells below 1e-5 occupancy, emulated on a CPU, moved rgb, opacity and
    normals by <= 6e-4 and depth by <= 2e-3; the rest is the two quadratures' difference."""
    pytest.importorskip("nerfacc")
    field = NeRFField()
    cameras = Cameras(
        torch.tensor([0.0, 120.0]), torch.tensor([10.0, 40.0]), torch.tensor([2.8, 2.6]), 40.0
    )
    grid = OccGridConfig(threshold=1e-5)
    config = RenderConfig(samples=256, jitter=False, backend="nerfacc", grid=grid)
    with torch.no_grad():
        cpu = render_image(field, cameras, 32, config, "lambertian")
        field = field.cuda()
        estimator = occupancy_grid(config, "cuda")
        update_occupancy_grid(estimator, field.density, step=0, config=config)
        cuda = render_image(field, cameras, 32, config, "lambertian", estimator=estimator)
    for key, tol in (("rgb", 0.02), ("opacity", 0.02), ("normals", 0.02), ("depth", 0.05)):
        err = (cuda[key].cpu() - cpu[key]).abs()
        assert err.mean() < tol / 10 and err.max() < tol, key


def test_normal_smoothness_by_hand():
    # a 2 x 2 normal map: up, +y / up, up. The pairs (0,0)-(0,1) and (0,1)-(1,1) differ by
    # |(0, 0, 1) - (0, 1, 0)|_1 = 2 each; the other two pairs not at all
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    normals = n.T.reshape(1, 3, 2, 2)
    assert normal_smoothness(normals, torch.ones(1, 1, 2, 2)).item() == pytest.approx(4.0)
    # each pair counts at the smaller opacity of its two pixels: at 0.25 on pixel (0, 1)
    opacity = torch.tensor([[1.0, 0.25], [1.0, 1.0]]).reshape(1, 1, 2, 2)
    assert normal_smoothness(normals, opacity).item() == pytest.approx(1.0)
    # per view: two identical views cost what one does
    two = normal_smoothness(normals.expand(2, -1, -1, -1), opacity.expand(2, -1, -1, -1))
    assert two.item() == pytest.approx(1.0)
    # the silhouette's edge against empty background is free; the loss pulls neighbours together
    normals = normals.clone().requires_grad_(True)
    normal_smoothness(
        normals, torch.tensor([[1.0, 0.0], [1.0, 1.0]]).reshape(1, 1, 2, 2)
    ).backward()
    assert normals.grad[0, :, 0, 1].abs().sum() == 0
    rendered = {"normals": normals.detach(), "opacity": opacity, "orientation": torch.zeros(1)}
    loss, logs = regularisers(rendered, RegulariserConfig(sparsity=0, orient=0, normal_smooth=0.5))
    assert logs["normal_smooth"] == pytest.approx(1.0) and loss.item() == pytest.approx(0.5)


def test_surface_shading_of_a_hard_ball_by_hand():
    # a ball of radius 0.5, density 400, albedo rho: rays that hit it stop within a bin of its
    # front point p (ray_sphere), whose normal is p / 0.5; deferred shading must give
    # rgb = rho (a + (1 - a) max(0, n.l)) there (textureless: without rho), the background
    # where rays miss, normals = n on hits and 0 on misses
    rho = torch.tensor([0.2, 0.6, 1.0])

    def ball(points):
        sigma = torch.where(points.norm(dim=-1) < 0.5, 400.0, 0.0)
        return sigma, rho.expand(len(points), 3)

    config = RenderConfig(samples=256, jitter=False, backend="torch")
    origins, dirs = (x.reshape(-1, 3) for x in FRONT.rays(16))
    near, far = ray_sphere(origins, dirs, 0.5)
    hit = far > near
    p = origins + dirs * near[:, None]
    n_true = p / 0.5
    light = torch.nn.functional.normalize(torch.tensor(ShadingConfig().light), dim=0)
    lit = 0.4 + 0.6 * (n_true @ light).clamp(min=0)
    frontal = hit & (-(n_true * dirs).sum(-1) > 0.3)  # not grazing: one bin moves p little
    assert frontal.sum() > 20 and (~hit).sum() > 20

    def normal_fn(x):
        return torch.nn.functional.normalize(x, dim=-1)

    bg = torch.tensor([0.0, 1.0, 0.0])
    for mode, expected in (("lambertian", rho * lit[:, None]), ("textureless", lit[:, None])):
        out = render_rays(ball, origins, dirs, config, mode, bg, normal_fn=normal_fn)
        assert torch.allclose(out["rgb"][frontal], expected[frontal].expand(-1, 3), atol=0.02)
        assert torch.equal(out["rgb"][~hit], bg.expand(int((~hit).sum()), 3))
        assert (out["normals"][frontal] - n_true[frontal]).norm(dim=-1).max() < 0.02
        assert out["normals"][~hit].abs().max() == 0 and out["orientation"][frontal].max() == 0


def test_surface_and_per_sample_normals_shade_the_blob_alike():
    # the initial blob's density exp(10 (1 - |x| / 0.5)) has a sharp front: shading each sample
    # (DreamFusion) and shading once at the expected surface must agree where it is opaque
    field = NeRFField()
    outs = {}
    for at in ("samples", "surface"):
        config = RenderConfig(samples=128, jitter=False, normals=at)
        with torch.no_grad():
            outs[at] = render_image(field, FRONT, 24, config, "textureless")
    solid = outs["samples"]["opacity"][0, 0] > 0.99
    assert solid.sum() > 40
    rgb = (outs["samples"]["rgb"] - outs["surface"]["rgb"]).abs()[0].amax(0)
    normals = (outs["samples"]["normals"] - outs["surface"]["normals"]).norm(dim=1)[0]
    assert rgb[solid].max() < 0.03 and normals[solid].max() < 0.06
    # the deferred normals carry the field's gradient: the orientation term (no gradient
    # through its weights) reaches the parameters only through them
    out = render_image(field, FRONT, 8, RenderConfig(samples=32), "textureless")
    (grad,) = torch.autograd.grad(out["orientation"].sum(), field.mlp[0].weight)
    assert grad.abs().sum() > 0


def test_surface_point_of_a_translucent_ball_is_the_expected_depth():
    # a ray along -z from (0, 0, 3) through a ball of radius 0.5 and density 1.5: it crosses
    # the chord [2.5, 3.5] with opacity a = 1 - e^-1.5 = 0.776870, and the weights' mean
    # depth within it is 1 / 1.5 - e^-1.5 / (1 - e^-1.5) = 0.379452, so the surface point is
    # z = 3 - 2.5 - 0.379452 = 0.120548 (depth / a, not depth: z = 0.763)
    def ball(points):
        sigma = torch.where(points.norm(dim=-1) < 0.5, 1.5, 0.0)
        return sigma, torch.ones(len(points), 3)

    seen = []

    def normal_fn(x):
        seen.append(x)
        return torch.nn.functional.normalize(x, dim=-1)

    o, d = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    config = RenderConfig(samples=1024, jitter=False, backend="torch")
    out = render_rays(ball, o, d, config, "lambertian", normal_fn=normal_fn)
    assert out["opacity"].item() == pytest.approx(0.776870, abs=2e-3)
    assert seen[0][0, 2].item() == pytest.approx(0.120548, abs=3e-3)
    assert seen[0][0, :2].abs().max() < 1e-6
