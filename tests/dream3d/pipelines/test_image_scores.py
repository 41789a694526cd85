import pytest
import torch

from dream3d.pipelines.image_scores import (
    ScoreConfig,
    Scorer,
    cycled,
    read_caption,
    truth_images,
    verdicts,
)
from dream3d.pipelines.world import load_judge
from scenes.world import sample_views

FOUR = [
    "a chair, front view",
    "a red mug, side view",
    "a cube, overhead view",
    "a blue torus, back view",
]


@pytest.fixture(scope="module")
def judge():
    return load_judge()


def test_a_caption_reads_as_its_prompt_and_view():
    spec, view = read_caption("a red chair, side view")
    assert (spec.object, spec.colour, view) == ("chair", "red", "side")
    spec, view = read_caption("an orange mug, overhead view")
    assert (spec.object, spec.colour, view) == ("mug", "orange", "overhead")
    with pytest.raises(ValueError, match="caption like"):
        read_caption("a red chair")
    assert cycled(["a", "b", "c"], 7) == ["a", "b", "c", "a", "b", "c", "a"]
    with pytest.raises(ValueError, match=">= 4"):
        ScoreConfig(n=3)


def test_truths_follow_their_captions():
    captions = cycled(FOUR, 16)
    x = truth_images(captions, seed=0)
    assert x.shape == (16, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, truth_images(captions, seed=0))  # seeded
    assert not torch.equal(x, truth_images(captions, seed=1))
    # rows 1, 5, 9, 13 are red mugs: their darkest pixels are red (R high, G and B low)
    red = x[1::4].add(1).div(2)
    mask = (1 - red).amax(1) > 0.2  # foreground
    r, g, b = (red[:, c][mask].mean() for c in range(3))
    assert r > g + 0.3 and r > b + 0.3


def test_verdicts_of_one_red_plain_chair_called_a_chair(judge):
    """24 renders of the plain chair in red, captioned "a chair": every colour and variant
    the caption allows but one is missing, so both total variations are exactly known:
    colour 1 - 1/8 = 0.875 and variant 1 - 1/3 = 2/3."""
    v = sample_views(24, torch.Generator().manual_seed(0), ["chair-plain"], ["red"], "front", 32)
    images = v["images"] * 2 - 1
    got = verdicts(judge, images, ["a chair, front view"] * 24)
    assert got["object_acc"] == 1.0 and got["colour_acc"] is None
    assert got["colour_tv"] == pytest.approx(0.875)
    assert got["variant_tv"] == pytest.approx(2 / 3)
    wrong = verdicts(judge, images, ["a blue mug, front view"] * 24)
    assert wrong["object_acc"] == 0.0 and wrong["colour_acc"] == 0.0
    assert wrong["colour_tv"] is None and wrong["variant_tv"] is None
    right = verdicts(judge, images, ["a red chair, front view"] * 24)
    assert right["colour_acc"] == 1.0 and right["colour_tv"] is None


def test_a_second_truth_sample_scores_far_better_than_the_wrong_captions(judge):
    captions = cycled(FOUR, 128)
    scorer = Scorer(judge, captions, seed=0)
    floor = scorer.floor()
    wrong_captions = ["a chair, back view", "a green mug, side view", "a cone, overhead view"]
    wrong = scorer(truth_images(cycled([*wrong_captions, "a red torus, back view"], 128), 5))
    # measured: floor fd 34, precision 0.93, recall 0.97; wrong captions fd 692, 0.24, 0.25
    assert floor["fd"] < 60 and wrong["fd"] > 10 * floor["fd"]
    assert floor["precision"] > 0.85 and floor["recall"] > 0.85
    assert wrong["precision"] < 0.5 and wrong["recall"] < 0.5
    assert floor["object_acc"] == 1.0 and floor["colour_acc"] == 1.0
    assert floor["colour_tv"] < 0.4  # 32 chairs, 8 colours: sampling noise only
    assert scorer(truth_images(captions, 0), fd_only=True)["fd"] < 1e-2
    with pytest.raises(ValueError, match="samples for"):
        scorer(truth_images(captions[:8], 0))
