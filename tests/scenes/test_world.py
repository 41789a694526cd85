import pytest
import torch

from scenes.catalogue import SHAPES
from scenes.world import sample_views


def test_sample_views_shapes_captions_and_determinism():
    out = sample_views(12, torch.Generator().manual_seed(3), size=16)
    assert out["images"].shape == (12, 3, 16, 16)
    for text, shape, colour, view in zip(out["captions"], out["shape"], out["colour"], out["view"]):
        assert text.endswith(f" {colour} {SHAPES[shape].object}, {view} view")
    assert out["view"] == out["cameras"].views()
    again = sample_views(12, torch.Generator().manual_seed(3), size=16)
    assert torch.equal(out["images"], again["images"]) and out["captions"] == again["captions"]


def test_sample_views_respects_restrictions():
    out = sample_views(8, torch.Generator().manual_seed(0), ["cube", "mug"], ["red"], "overhead", 8)
    assert set(out["shape"]) <= {"cube", "mug"} and set(out["colour"]) == {"red"}
    assert set(out["view"]) == {"overhead"}
    with pytest.raises(ValueError, match="unknown shapes"):
        sample_views(2, shapes=["dragon"])
