"""The Janus score of a NeRF: depth rendered by the NeRF renderer from hand-made fields whose
answer is known (the true chair, the chair turned by 90 degrees, a chair with two backs)."""

import types

import pytest
import torch
from torch import nn

from dream3d.pipelines.outputs import nerf_depth_fn
from generators.nerf.generator import NeRFConfig
from scenes.catalogue import SHAPES
from scenes.shape_scores import janus_score, orbit_cameras, true_depth, turn

CHAIR = SHAPES["chair-plain"]


class SdfField(nn.Module):
    """A field whose density is a sharp step at the SDF's zero level: nearly opaque inside."""

    def __init__(self, sdf):
        super().__init__()
        self.sdf = sdf
        self.unused = nn.Parameter(torch.zeros(()))  # the renderer asks for a device

    def forward(self, p):
        return 400 * torch.sigmoid(-self.sdf(p) / 0.005), torch.full((len(p), 3), 0.5)

    def density(self, p):
        return self(p)[0]


def _nerf(sdf):
    return types.SimpleNamespace(field=SdfField(sdf), config=NeRFConfig(), occupancy=None)


def test_the_nerf_s_depth_is_the_traced_truth_s():
    cams = orbit_cameras([0.0, 90.0])
    depth = nerf_depth_fn(_nerf(CHAIR), 32, 128)(cams)
    truth = true_depth("chair-plain", cams, 32)
    covered, true_covered = torch.isfinite(depth), truth < cams.radius[:, None, None] + 1.5
    assert (covered == true_covered).float().mean() > 0.95
    both = covered & true_covered
    assert (depth[both] - truth[both]).abs().mean() < 0.08


@pytest.mark.parametrize(
    "sdf, yaw, janus",
    [
        (CHAIR, 0.0, 0),
        (lambda p: CHAIR(turn(p, -90.0)), 90.0, 0),  # the chair turned to face +y
        (lambda p: CHAIR(torch.stack([-p[:, 0].abs(), p[:, 1], p[:, 2]], -1)), None, 1),  # 2 backs
    ],
)
def test_janus_of_hand_made_fields_through_the_nerf_renderer(sdf, yaw, janus):
    score = janus_score(nerf_depth_fn(_nerf(sdf), 32, 64), "chair-plain")
    assert score["janus"] == bool(janus)
    if yaw is not None:
        assert score["yaw"] == yaw and score["off_fraction"] == 0.0
    else:
        assert score["off_fraction"] >= 0.4  # front views see a back, back views a back
