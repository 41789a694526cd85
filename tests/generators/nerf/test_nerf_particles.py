import pytest
import torch

from dream3d.clock import NO_CLOCK
from dream3d.guidance import build_guidance, guidance_config
from dream3d.guidance.base import inject
from dream3d.teachers.tiny import TinyConfig, TinyTeacher
from dream3d.train import Sample, TrainConfig, _State, _step
from generators.nerf.generator import NeRFConfig, NeRFGenerator
from generators.nerf.particles import SEED_STRIDE, NeRFParticles, particle_seed
from generators.nerf.render import RenderConfig

SMALL = NeRFConfig(size=16, render=RenderConfig(samples=8))


def _teacher():
    torch.manual_seed(0)
    config = TinyConfig(size=16, block_out_channels=(8, 16), head_dim=8)
    return TinyTeacher(config, encoder=lambda p: torch.randn(len(p), 384))


def test_particle_seeds_start_at_the_single_nerfs_seed():
    assert [particle_seed(3, k) for k in range(3)] == [3, 3 + SEED_STRIDE, 3 + 2 * SEED_STRIDE]
    with pytest.raises(ValueError, match="particles must be >= 1, got 0"):
        NeRFParticles(SMALL, 0)


def test_one_particle_is_the_single_nerf_and_k_stack_their_own_renders():
    single = NeRFGenerator(SMALL, seed=5).sample(2, torch.Generator().manual_seed(1))
    one = NeRFParticles(SMALL, 1, seed=5).sample(2, torch.Generator().manual_seed(1))
    assert torch.equal(one.x, single.x) and one.members == 1
    assert one.info["views"] == single.info["views"]
    three = NeRFParticles(SMALL, 3, seed=5).sample(2, torch.Generator().manual_seed(1))
    assert three.x.shape == (6, 3, 16, 16) and three.members == 3
    assert three.info["particle"] == [0, 0, 1, 1, 2, 2] and len(three.info["views"]) == 6
    assert torch.equal(three.x[:2], single.x)  # particle 0 draws first, from the same rng
    assert not torch.allclose(three.x[2:4], three.x[:2])  # its own init and cameras
    assert three.aux_loss is not None and three.info["pose"].shape[0] == 6


def _particle_0_gradient(name: str, nudge: float) -> torch.Tensor:
    """Particle 0's field gradient after one training step of 2 particles, with particle 1's
    weights nudged by ``nudge`` (everything else, draws included, the same)."""
    teacher = _teacher()
    extra = {"fake_steps": 2, "fake_lr": 1e-3} if name == "ikl" else {}  # the 2nd fake step's
    guidance = build_guidance(guidance_config(name, cfg_scale=3.0, **extra), teacher)  # output
    particles = NeRFParticles(SMALL, 2, seed=0)
    with torch.no_grad():
        for p in particles.nerfs[1].parameters():
            p.add_(nudge)
    config = TrainConfig(steps=1, lr=1e-2, progress=False)
    opt = torch.optim.Adam(particles.parameters(), lr=0.0)  # the step leaves weights alone
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)

    def cond_fn(sample):
        return teacher.encode_prompt([f"a chair, {v} view" for v in sample.info["views"]])

    state = _State(torch.Generator().manual_seed(0))
    _step(particles, guidance, config, opt, sched, cond_fn, state, NO_CLOCK)
    return torch.cat([p.grad.flatten() for p in particles.nerfs[0].parameters()])


def test_sds_particles_train_alone_and_ikl_particles_feel_each_other_through_the_fake():
    # SDS: eps_fake is each render's own noise, so particle 1 cannot reach particle 0
    sds = _particle_0_gradient("sds", 0.0), _particle_0_gradient("sds", 0.05)
    assert torch.equal(*sds) and sds[0].abs().sum() > 0
    # IKL: the one fake score took a step on both particles' renders before the eps_fake
    # the loss uses (with share_draw, the last of its k = 2 steps' output)
    ikl = _particle_0_gradient("ikl", 0.0), _particle_0_gradient("ikl", 0.05)
    assert not torch.allclose(*ikl) and ikl[0].abs().sum() > 0


class _KnownG:
    """A guidance whose g is given: the loss is inject(x, g)."""

    def __init__(self, g):
        self.g = g

    def update_fake(self, x, cond, progress, rng, **kwargs):
        return {}

    def to_teacher(self, x):
        return x

    def loss(self, x, cond, progress, rng, **kwargs):
        return inject(x, self.g), {"grad_norm": 0.0}


class _Stacked(torch.nn.Module):
    """Two members of two renders each: x is the parameter itself."""

    def __init__(self, members: int):
        super().__init__()
        self.x, self.members = torch.nn.Parameter(torch.randn(4, 3, 2, 2)), members

    def sample(self, n, rng):
        return Sample(self.x, {}, members=self.members)


@pytest.mark.parametrize("members, share", [(1, 4), (2, 2)])
def test_each_member_gets_the_gradient_its_own_renders_give(members, share):
    """The guidance loss is a mean over the batch; members = K makes it one over each
    member's n renders: d loss / d x = g / n, not g / (K n)."""
    g = torch.randn(4, 3, 2, 2)
    gen = _Stacked(members)
    opt = torch.optim.SGD(gen.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    config = TrainConfig(steps=1, progress=False)
    state = _State(torch.Generator().manual_seed(0))
    _step(gen, _KnownG(g), config, opt, sched, None, state, NO_CLOCK)
    assert torch.allclose(gen.x.grad, g / share)
