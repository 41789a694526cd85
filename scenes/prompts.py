"""Prompts for the embedded teachers: which shapes and colours a text asks for.

"a red chair" asks for every chair variant in red; "a chair" for every chair in any colour.
A prompt with no catalogue word is matched to the nearest catalogue prompt by MiniLM
similarity when that is close enough; otherwise the error lists the vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from scenes.catalogue import COLOURS, OBJECTS, SHAPES

MIN_SIMILARITY = 0.6  # cosine similarity to the nearest catalogue prompt to accept it


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks of the toy world."""

    text: str  # canonical prompt, e.g. "a red chair" or "a chair"
    object: str  # catalogue object word
    colour: str | None  # None: any colour
    matched_from: str | None = None  # the user's words when MiniLM mapped them

    @property
    def shapes(self) -> list[str]:
        return [k for k, s in SHAPES.items() if s.object == self.object]

    @property
    def colours(self) -> list[str]:
        return list(COLOURS) if self.colour is None else [self.colour]

    def caption(self, view: str) -> str:
        """The teacher's caption for one view: "a red chair, side view"."""
        return f"{self.text}, {view} view"


def canonical(obj: str, colour: str | None) -> str:
    word = obj if colour is None else f"{colour} {obj}"
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def catalogue_prompts() -> list[str]:
    """Every prompt the embedded teachers know: each object, alone and in each colour."""
    return [canonical(o, c) for o in OBJECTS for c in (None, *COLOURS)]


def vocabulary() -> str:
    return f"objects: {', '.join(OBJECTS)}; colours: {', '.join(COLOURS)}"


def _words(prompt: str, known) -> list[str]:
    tokens = re.findall(r"[a-z]+", prompt.lower())
    tokens += [t[:-1] for t in tokens if t.endswith("s")]  # "chairs" -> "chair"
    return [w for w in known if w in tokens]


def parse_prompt(prompt: str, encoder=None) -> PromptSpec:
    """Catalogue words first; else the nearest catalogue prompt by MiniLM; else a ValueError."""
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty; try e.g. 'a red chair'")
    objects, colours = _words(prompt, OBJECTS), _words(prompt, COLOURS)
    if len(objects) > 1 or len(colours) > 1:
        raise ValueError(f"one object and at most one colour per prompt, got {prompt!r}")
    if objects:
        return PromptSpec(canonical(objects[0], *colours or [None]), objects[0], *colours or [None])
    return _nearest(prompt, encoder)


def _nearest(prompt: str, encoder) -> PromptSpec:
    """The catalogue prompt closest to ``prompt`` in MiniLM space, if close enough."""
    if encoder is None:
        from dream3d.text import encode_text as encoder
    known = catalogue_prompts()
    table = _catalogue_embeddings(encoder)
    query = encoder([prompt])[0]
    sims = table @ query
    best = int(sims.argmax())
    if float(sims[best]) < MIN_SIMILARITY:
        raise ValueError(f"{prompt!r} is not in the toy world's vocabulary ({vocabulary()})")
    spec = parse_prompt(known[best])
    return PromptSpec(spec.text, spec.object, spec.colour, matched_from=prompt)


@lru_cache(maxsize=2)
def _catalogue_embeddings(encoder):
    return encoder(catalogue_prompts())  # (P, 384), unit rows
