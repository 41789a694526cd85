from dataclasses import replace

import pytest
import torch

from generators.nerf.field import (
    PRIMES,
    FieldConfig,
    HashGrid,
    HashGridConfig,
    NeRFField,
    grid_backend,
    trunc_exp,
)


@pytest.mark.parametrize(
    "levels, n_min, n_max, expected",
    [
        (3, 16, 64, [16, 32, 64]),  # b = (64 / 16)^(1/2) = 2
        (4, 10, 80, [10, 20, 40, 80]),  # b = 8^(1/3) = 2
        (3, 10, 35, [10, 18, 35]),  # b = 3.5^(1/2) = 1.8708: 18.708 floors to 18
        # the CPU default, b = 8^(1/5) = 1.515717: 16 b^k = 16, 24.25, 36.76, 55.72, 84.45,
        # 128; b^5 comes out 127.99999999999996 in floats, floored to 127 without the 1e-6
        (6, 16, 128, [16, 24, 36, 55, 84, 128]),
        (1, 16, 128, [16]),  # one level: b = 1, no division by L - 1 = 0
        # threestudio's CUDA grid, b = 128^(1/15): 16 b^l = 16 2^(7 l / 15) to 40 digits is
        # 16, 22.11, 30.55, 42.22, 58.35, 80.63, 111.43, 153.99, 212.80, 294.07, 406.37,
        # 561.57, 776.05, 1072.43, 1482.004, 2048 (a hair under in floats)
        (
            16,
            16,
            2048,
            [16, 22, 30, 42, 58, 80, 111, 153, 212, 294, 406, 561, 776, 1072, 1482, 2048],
        ),
    ],
)
def test_level_resolutions_follow_instant_ngp(levels, n_min, n_max, expected):
    """N_l = floor(N_min b^l), b = (N_max / N_min)^(1 / (L - 1)) (Instant-NGP eqs. 2, 3)."""
    config = HashGridConfig(levels=levels, base_resolution=n_min, max_resolution=n_max)
    assert [config.resolution(level) for level in range(levels)] == expected
    grid = HashGrid(replace(config, log2_table=12))
    assert grid.resolutions == expected
    # a level is indexed densely while its (N_l + 1)^3 vertices fit the 4096 table rows
    assert [grid.dense(level) for level in range(levels)] == [
        (n + 1) ** 3 <= 4096 for n in expected
    ]


def test_hash_grid_shape_init_and_seed():
    torch.manual_seed(0)
    a = HashGrid()
    torch.manual_seed(0)
    b = HashGrid()
    x = torch.rand(50, 3)
    assert a.table.shape == (6, 2**14, 2) and a.table.abs().max() <= 1e-4
    assert a(x).shape == (50, 12) and torch.equal(a(x), b(x))
    assert not torch.equal(NeRFField(seed=0)(x)[0], NeRFField(seed=1)(x)[0])
    assert torch.equal(NeRFField(seed=3)(x)[1], NeRFField(seed=3)(x)[1])
    # no points at all (an empty occupancy grid culls every sample): (0, L F), not an error
    density, albedo = NeRFField()(torch.zeros(0, 3))
    assert a(torch.zeros(0, 3)).shape == (0, 12) and density.shape == (0,)
    assert albedo.shape == (0, 3)


def test_coarse_levels_are_dense_without_collisions():
    grid = HashGrid()
    assert grid.dense(0) and grid.dense(1) and not grid.dense(2)  # 17^3, 25^3 <= 2^14 < 37^3
    for level in (0, 1):
        side = grid.resolutions[level] + 1
        v = torch.arange(side)
        i, j, k = torch.meshgrid(v, v, v, indexing="ij")
        rows = grid.index(i, j, k, level)
        assert rows.unique().numel() == side**3 and rows.max() < 2**14
    # finer levels hash (i p1 xor j p2 xor k p3) mod T with Instant-NGP's primes; by hand,
    # the low 14 bits of p2 = 0x9E3779B1 and p3 = 0x30025795 are 0x39B1 and 0x1795
    one = torch.tensor(1)
    assert PRIMES == (1, 0x9E3779B1, 0x30025795)
    assert grid.index(one, one, one, 5) == 0x39B1 ^ 0x1795 ^ 1 == 11813


def test_interpolation_hits_vertices_and_is_continuous():
    torch.manual_seed(0)
    grid = HashGrid()
    with torch.no_grad():
        grid.table.uniform_(-1, 1)
    n = grid.resolutions[3]
    vertex = torch.tensor([[3, 7, 5]])
    rows = grid.index(vertex[:, 0], vertex[:, 1], vertex[:, 2], 3)
    feats = grid(vertex / n).view(1, 6, 2)[:, 3]
    assert torch.allclose(feats, grid.table[3, rows], atol=1e-6)
    # either side of a cell face, and a small step anywhere: values move by <= N_l |dx| |df|
    face = torch.tensor([[5 / n, 0.3, 0.6]])
    eps = torch.tensor([[1e-6, 0, 0]])
    assert (grid(face + eps) - grid(face - eps)).abs().max() < 1e-3
    x = torch.rand(200, 3) * 0.99
    step = 1e-5 * torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    bound = 2 * 128 * 3 * 1e-5  # |df| <= 2, N_max = 128, |dx|_1 <= sqrt(3) |dx|
    assert (grid(x + step) - grid(x)).abs().max() < bound


def test_gradient_reaches_the_table_with_trilinear_weights():
    grid = HashGrid()
    grid(torch.tensor([[0.31, 0.52, 0.77]])).sum().backward()
    g = grid.table.grad  # (L, T, F): each level's 8 corner weights sum to 1
    assert torch.allclose(g.sum(1), torch.ones(6, 2))
    assert ((g[..., 0] != 0).sum(1) == 8).all()


def test_initial_field_is_a_blob():
    field = NeRFField(FieldConfig(activation="softplus"))
    axes = torch.cat([torch.eye(3), -torch.eye(3)])
    with torch.no_grad():
        centre = field.density(torch.zeros(1, 3))
        edge = field.density(0.9 * axes)
        outside = field.density(1.1 * axes)
    assert centre.item() == pytest.approx(10.0, abs=0.5)  # softplus(10 + small MLP output)
    assert (edge < 1e-2).all() and (outside == 0).all()
    assert field.albedo(torch.zeros(4, 3)).shape == (4, 3)


def test_exp_density_and_its_truncated_gradient():
    x = torch.tensor([0.0, 2.0, 20.0], requires_grad=True)
    y = trunc_exp(x)
    y.sum().backward()
    assert torch.allclose(y, x.detach().exp())
    assert torch.allclose(x.grad, torch.tensor([0.0, 2.0, 15.0]).exp())
    field = NeRFField(FieldConfig(activation="exp", blob_density=5.0))
    with torch.no_grad():
        # the MLP's offset at the origin (its random init) removed: raw = the blob bias alone
        field.mlp[-1].bias[0] -= field.mlp(field.encoding(torch.full((1, 3), 0.5)))[0, 0]
        centre = field.density(torch.zeros(1, 3))
        rim = field.density(torch.tensor([[0.5, 0.0, 0.0]]))
    assert centre.item() == pytest.approx(148.4, rel=0.05)  # e^5 at the origin
    assert rim.item() == pytest.approx(1.0, rel=0.05)  # the blob bias crosses 0 at r = 0.5
    # density and normals in one pass, differentiable in the field's parameters
    sigma, _, normals = field.with_normals(0.3 * torch.eye(3), create_graph=True)
    (sigma.sum() + normals.sum()).backward()
    assert field.encoding.table.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="density activation 'relu'"):
        NeRFField(FieldConfig(activation="relu"))


@pytest.mark.parametrize("mode", ["autograd", "finite"])
def test_blob_normals_point_outward(mode):
    field = NeRFField(FieldConfig(normals=mode))
    x = 0.3 * torch.nn.functional.normalize(
        torch.randn(64, 3, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    normals = field.normals(x)
    assert torch.allclose(normals.norm(dim=-1), torch.ones(64), atol=1e-5)
    assert ((normals * x / 0.3).sum(-1) > 0.9).all()


def test_autograd_normals_graph_follows_grad_mode():
    field = NeRFField()
    x = torch.rand(16, 3) - 0.5
    density, albedo, normals = field.with_normals(x)  # grad mode on: differentiable normals
    normals.sum().backward()
    assert field.mlp[0].weight.grad.abs().sum() > 0
    assert torch.allclose(density, field.density(x)) and torch.allclose(albedo, field.albedo(x))
    with torch.no_grad():
        assert not any(t.requires_grad for t in field.with_normals(x))
    finite = NeRFField(FieldConfig(normals="finite")).normals(x)
    assert ((finite * field.normals(x)).sum(-1) > 0.999).all()


def test_backend_choice():
    assert grid_backend("auto", "cpu") == "torch" and grid_backend("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="CUDA"):
        grid_backend("tcnn", "cpu")
    assert isinstance(
        NeRFField(FieldConfig(grid=HashGridConfig(backend="auto"))).encoding, HashGrid
    )
