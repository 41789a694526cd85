import os

import pytest
import torch

# without CUDA the kernels run in Triton's interpreter, which @triton.jit reads when
# hashgrid_triton defines them: this is set before anything imports that module
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")

from generators.nerf import hashgrid_triton  # noqa: E402
from generators.nerf.field import (  # noqa: E402
    FieldConfig,
    HashGrid,
    HashGridConfig,
    NeRFField,
    TritonHashGrid,
    grid_backend,
)
from generators.nerf.hashgrid_triton import triton_hash_encode  # noqa: E402

# (levels, features, log2 T, N_min, N_max); every one mixes dense and hashed levels
CONFIGS = {
    "collide": HashGridConfig(4, 2, 6, 3, 32),  # T = 64: N_l 3 (dense), 6, 14, 32 (hashed)
    "F1": HashGridConfig(6, 1, 10, 4, 64),  # N_l 4, 6 (dense, 7^3 <= 1024), 12, 21, 36, 64
    "F4": HashGridConfig(5, 4, 12, 2, 40),  # N_l 2, 4, 8 (dense, 9^3 <= 4096), 18, 40
    "F3": HashGridConfig(4, 3, 8, 2, 16),  # F = 3 pads to 4 lanes; N_l 2, 4 dense, 8, 16
}


def grids(config: HashGridConfig, seed: int = 0) -> tuple[HashGrid, TritonHashGrid]:
    """The reference and the fused grid sharing one table, uniform in [-1, 1]."""
    torch.manual_seed(seed)
    ref = HashGrid(config).to(DEVICE)
    with torch.no_grad():
        ref.table.uniform_(-1, 1)
    fused = TritonHashGrid(config).to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def points(n: int, seed: int = 0) -> torch.Tensor:
    """n random points in [0, 1]^3, then the 8 box corners and 4 points on each of the 6 faces
    (one coordinate exactly 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)])
    faces = torch.rand(24, 3, generator=g)
    faces[torch.arange(24), torch.arange(24) % 3] = (torch.arange(24) // 3 % 2).float()
    return torch.cat([torch.rand(n, 3, generator=g), corners, faces]).to(DEVICE)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_values_and_table_gradients_match_the_reference(name):
    config = CONFIGS[name]
    ref, fused = grids(config)
    dense = [ref.dense(level) for level in range(config.levels)]
    assert any(dense) and not all(dense)
    x = points(200)
    upstream = torch.randn(x.shape[0], config.levels * config.features, device=DEVICE)
    expected = ref(x)
    expected.backward(upstream)
    got = fused(x)
    got.backward(upstream)
    assert got.shape == expected.shape == (232, config.levels * config.features)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(fused.table.grad, ref.table.grad, atol=1e-5, rtol=0)
    assert ref.table.grad.abs().max() > 1  # the random upstream reaches the table


def python_hash(i: int, j: int, k: int, size: int) -> int:
    """Instant-NGP's hash in Python's unbounded ints (no wrapping anywhere)."""
    return (i * 1 ^ j * 2654435761 ^ k * 805459861) % size


def test_small_table_collides_and_hashes_like_python_ints():
    config = CONFIGS["collide"]
    ref, fused = grids(config)
    x = points(200)
    # collisions counted by hand: rows of the 64-row table that distinct vertices share; the
    # points touch 339, 1387 and 1793 vertices at the hashed levels, so every row is shared
    shared = 0
    for level in (1, 2, 3):  # the hashed levels
        n = ref.resolutions[level]
        cells = (x.cpu().double() * n).floor().clamp(0, n - 1).long().tolist()
        vertices = {
            (i + a, j + b, k + c)
            for i, j, k in cells
            for a in (0, 1)
            for b in (0, 1)
            for c in (0, 1)
        }
        owners = {}
        for v in vertices:
            owners.setdefault(python_hash(*v, 64), set()).add(v)
        shared += sum(len(vs) > 1 for vs in owners.values())
    assert shared == 3 * 64
    # a point on a vertex reads that vertex's row: (1, 1, 1) -> 1 ^ 49 ^ 21 = 37 (the low 6
    # bits of the primes 0x9E3779B1, 0x30025795 are 0x31, 0x15), and (31, 29, 30) at N_3 = 32,
    # whose products overflow 32 bits
    assert python_hash(1, 1, 1, 64) == 37
    vertices = torch.tensor([[1, 1, 1], [31, 29, 30]], device=DEVICE)
    with torch.no_grad():
        feats = fused(vertices / 32).view(2, 4, 2)[:, 3]  # (2, F) at level 3
    rows = [37, python_hash(31, 29, 30, 64)]
    torch.testing.assert_close(feats, ref.table[3, rows].detach(), atol=1e-5, rtol=0)


def test_gradient_in_the_points_is_refused():
    ref, fused = grids(CONFIGS["F1"])
    x = points(16).requires_grad_(True)
    levels, dense = ref.resolutions, [ref.dense(level) for level in range(6)]
    with pytest.raises(ValueError, match="no gradient in the points"):
        triton_hash_encode(x, ref.table, levels, dense)
    with torch.no_grad():  # the same points, no graph asked for
        torch.testing.assert_close(triton_hash_encode(x, ref.table, levels, dense), ref(x))
    assert fused(x).requires_grad  # TritonHashGrid falls back to HashGrid's forward


def test_triton_grid_keeps_the_hash_grid_state_dict():
    torch.manual_seed(5)
    a = HashGrid(CONFIGS["F4"])
    torch.manual_seed(5)
    b = TritonHashGrid(CONFIGS["F4"])
    assert list(a.state_dict()) == list(b.state_dict()) == ["table"]
    assert torch.equal(a.table, b.table)  # no extra random draws
    b.load_state_dict(HashGrid(CONFIGS["F4"]).state_dict())


def test_triton_field_equals_torch_field(monkeypatch):
    grid = HashGridConfig(backend="triton")
    fused = NeRFField(FieldConfig(grid=grid), seed=3, device=DEVICE)
    ref = NeRFField(FieldConfig(grid=HashGridConfig(backend="torch")), seed=3, device=DEVICE)
    assert isinstance(fused.encoding, TritonHashGrid) and type(ref.encoding) is HashGrid
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(128, 3, generator=g) * 2.2 - 1.1).to(DEVICE)  # some outside the box
    upstream = torch.randn(128, 4, generator=g).to(DEVICE)  # for density and albedo

    def outputs(field):  # (128, 4): density, albedo
        sigma, albedo = field(x)
        return torch.cat([sigma[:, None], albedo], 1)

    with monkeypatch.context() as m:  # points without grad: the fused kernels, never HashGrid's
        m.setattr(HashGrid, "forward", lambda self, x: pytest.fail("fell back"))
        got = outputs(fused)
        (got * upstream).sum().backward()
    expected = outputs(ref)
    (expected * upstream).sum().backward()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-5, msg=name)
    assert ref.encoding.table.grad.abs().sum() > 0
    # autograd normals differentiate in the points: the fallback, identical to the torch field
    fused.zero_grad()
    ref.zero_grad()
    probe = 0.3 * torch.nn.functional.normalize(x[:32], dim=-1)
    for field in (fused, ref):
        _, _, normals = field.with_normals(probe, create_graph=True)
        (normals * upstream[:32, 1:]).sum().backward()
    torch.testing.assert_close(fused.normals(probe), ref.normals(probe), atol=1e-6, rtol=0)
    torch.testing.assert_close(fused.encoding.table.grad, ref.encoding.table.grad)
    assert ref.encoding.table.grad.abs().sum() > 0


def test_backend_choice_with_triton(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert grid_backend("triton", "cpu") == "triton" and grid_backend("auto", "cpu") == "torch"
    monkeypatch.setattr("generators.nerf.field._tcnn_available", lambda: False)
    assert grid_backend("auto", "cuda") == "triton"  # no device needed to choose
    monkeypatch.setattr(hashgrid_triton, "triton_available", lambda: False)
    assert grid_backend("auto", "cuda") == "torch"
    with pytest.raises(ImportError, match="needs triton"):
        grid_backend("triton", "cuda")
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match=r"needs a CUDA device \(or TRITON_INTERPRET=1\)"):
        grid_backend("triton", "cpu")


@pytest.mark.requires_cuda
def test_cuda_matches_the_reference_at_scale():
    """threestudio's grid (N_max 2048) at 2^18 points. On the GPU the kernel's frac = x N - cell
    is one fused multiply-add, rounded once, where PyTorch rounds x N first: below 2048 the
    two fracs differ by up to half an ulp (6.1e-5), the features by up to 3 axes x that x
    |f_hi - f_lo| <= 2. The first `dream3d bench gpu` run failed this test when it asked 1e-5
    of random points (its message was not kept; that rounding, simulated on the CPU, gives
    1.7e-4). So: points on a 2^-12 lattice, where x N is exact in float32 and the two agree to
    summation order, and random points within the rounding bound."""
    config = HashGridConfig(levels=16, log2_table=19, max_resolution=2048)
    ref, fused = grids(config)
    lattice = torch.randint(0, 2**12 + 1, (2**18, 3), device="cuda") / 2**12  # x N exact
    upstream = torch.randn(2**18, 32, device="cuda")
    expected = ref(lattice)
    expected.backward(upstream)
    got = fused(lattice)
    got.backward(upstream)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.table.grad, ref.table.grad, atol=1e-4, rtol=1e-4)
    x = torch.rand(2**18, 3, device="cuda")
    with torch.no_grad():
        err = (fused(x) - ref(x)).abs()
    assert err.max() < 3 * 2 * 2**-13  # 7.3e-4: the bound above (3 x 2 x 6.1e-5 = 3.7e-4), x 2
