"""Image samples scored against the truth of the toy world (DESIGN.md section 6).

The truth is a set of ground-truth renders of the same captions from the same camera
distribution; features are the judge's penultimate layer (our FID's Inception: the judge was
trained on this world, so its features fit these images). Training never sees the truth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from dream3d.judge import Judge
from dream3d.metrics import frechet_distance, label_histogram, precision_recall, total_variation
from scenes.catalogue import COLOURS
from scenes.prompts import PromptSpec, parse_prompt
from scenes.score import foreground, nearest_variant, variants
from scenes.world import sample_views

KEYS = ("fd", "precision", "recall", "object_acc", "colour_acc", "colour_tv", "variant_tv")


@dataclass
class ScoreConfig:
    """How a distilled generator is scored against the truth."""

    n: int = 864  # samples scored (the captions cycled: two per catalogue caption), as many truths
    every: int = 100  # score fd during training every this many steps (0: only at the end)
    seed: int = 1234  # z of the scored samples and the ground-truth draws (the floor's: + 1)

    def __post_init__(self):
        if self.n < 4:
            raise ValueError(f"eval n must be >= 4 (recall uses 3 neighbours), got {self.n}")
        if self.every < 0:
            raise ValueError(f"eval every must be >= 0, got {self.every}")


def read_caption(caption: str) -> tuple[PromptSpec, str]:
    """ "a red chair, side view" -> (its prompt spec, "side")."""
    text, _, view = caption.rpartition(", ")
    if not text or not view.endswith(" view"):
        raise ValueError(f"expected a caption like 'a red chair, side view', got {caption!r}")
    return parse_prompt(text), view.removesuffix(" view")


def cycled(captions: list[str], n: int) -> list[str]:
    """``n`` captions: ``captions`` repeated in order."""
    return [captions[i % len(captions)] for i in range(n)]


def truth_images(captions: list[str], seed: int, size: int = 32) -> torch.Tensor:
    """One ground-truth render (n, 3, size, size) in [-1, 1] per caption: a variant, colour
    (when the caption leaves it open) and camera of the caption's view, drawn at random."""
    rng = torch.Generator().manual_seed(seed)
    images = torch.empty(len(captions), 3, size, size)
    for caption, count in Counter(captions).items():
        spec, view = read_caption(caption)
        rows = [i for i, c in enumerate(captions) if c == caption]
        views = sample_views(count, rng, spec.shapes, spec.colours, view, size)
        images[rows] = views["images"] * 2 - 1
    return images


@torch.no_grad()
def features(judge: Judge, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The judge's penultimate features (N, F) of images in [-1, 1] (clamped first)."""
    judge.eval()
    return torch.cat([judge.features(x.clamp(-1, 1)) for x in images.split(batch)])


class Scorer:
    """Scores samples of ``captions`` (one sample per entry) against fresh truths of them."""

    def __init__(self, judge: Judge, captions: list[str], seed: int, size: int = 32):
        self.judge, self.captions, self.seed, self.size = judge, list(captions), seed, size
        self.real = features(judge, truth_images(self.captions, seed, size))

    def __call__(self, images: torch.Tensor, fd_only: bool = False) -> dict:
        """fd, precision, recall (k = 3), the judge's accuracies and the colour / chair-variant
        total variation of captions that leave them open (None where no caption does)."""
        if len(images) != len(self.captions):
            raise ValueError(f"{len(images)} samples for {len(self.captions)} captions")
        fake = features(self.judge, images)
        scores = {"fd": frechet_distance(self.real, fake)}
        if fd_only:
            return scores
        scores["precision"], scores["recall"] = precision_recall(self.real, fake, k=3)
        return scores | verdicts(self.judge, images, self.captions)

    def floor(self) -> dict:
        """The scores of an independent ground-truth sample (seed + 1): what no generator beats."""
        return self(truth_images(self.captions, self.seed + 1, self.size))


def verdicts(judge: Judge, images: torch.Tensor, captions: list[str]) -> dict:
    """object_acc, colour_acc (captions with a colour), colour_tv (captions without one, against
    uniform over COLOURS) and variant_tv (chair captions, against uniform over the chairs)."""
    images = images.clamp(-1, 1)
    objects, colours = judge.predict(images)
    read = [read_caption(c) for c in captions]
    coloured = [i for i, (spec, _) in enumerate(read) if spec.colour is not None]
    free = [i for i, (spec, _) in enumerate(read) if spec.colour is None]
    chairs = [i for i, (spec, _) in enumerate(read) if spec.object == "chair"]
    out = {
        "object_acc": sum(o == spec.object for o, (spec, _) in zip(objects, read)) / len(read),
        "colour_acc": None,
        "colour_tv": None,
        "variant_tv": None,
    }
    if coloured:
        out["colour_acc"] = sum(colours[i] == read[i][0].colour for i in coloured) / len(coloured)
    if free:
        seen = label_histogram([colours[i] for i in free], list(COLOURS))
        out["colour_tv"] = total_variation(seen, torch.ones(len(COLOURS)))
    if chairs:
        masks = foreground((images[chairs] + 1) / 2)
        names = variants("chair")
        found = nearest_variant(masks, "chair", [read[i][1] for i in chairs])
        out["variant_tv"] = total_variation(label_histogram(found, names), torch.ones(len(names)))
    return out
