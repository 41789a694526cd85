import pytest

from scenes.prompts import catalogue_prompts, parse_prompt


def test_catalogue_words():
    spec = parse_prompt("A Red Chair")
    assert (spec.text, spec.object, spec.colour) == ("a red chair", "chair", "red")
    assert spec.shapes == ["chair-plain", "chair-arms", "chair-tall"] and spec.colours == ["red"]
    assert spec.caption("side") == "a red chair, side view"
    anyc = parse_prompt("a chair")
    assert anyc.colour is None and len(anyc.colours) == 8
    assert parse_prompt("two orange mugs").text == "an orange mug"
    assert len(catalogue_prompts()) == 12 * 9


def test_empty_and_ambiguous_prompts():
    with pytest.raises(ValueError, match="empty"):
        parse_prompt("   ")
    with pytest.raises(ValueError, match="one object"):
        parse_prompt("a chair and a table")


# (prompt, what it is read as): the measured similarities are in scenes/prompts.py
NEAR = [
    ("a blue coffee mug", "a blue mug"),
    ("a coffee cup", "a mug"),
    ("a teacup", "a mug"),
    ("a red armchair", "a red chair"),
    ("a globe", "a sphere"),
    ("a bar stool", "a stool"),
]
FAR = [
    "a purple elephant",
    "a dog",
    "a car",
    "a banana",
    "a house",
    "a tree",
    "a red sofa",  # near misses: sofa 0.584 (chair), ball 0.591 (sphere), box 0.463 (cube)
    "a ball",
    "a box",
]


@pytest.mark.parametrize("prompt, text", NEAR)
def test_minilm_maps_near_words_and_says_so(prompt, text):
    spec = parse_prompt(prompt)
    assert (spec.text, spec.mapped_from) == (text, prompt)
    assert spec.caption("side") == f"{text}, side view"


@pytest.mark.parametrize("prompt", FAR)
def test_minilm_refuses_far_words(prompt):
    with pytest.raises(ValueError, match="not in the toy world's vocabulary .objects: chair, cone"):
        parse_prompt(prompt)


def test_the_threshold_sits_between_the_measured_sets():
    from dream3d.text import encode_text
    from scenes.prompts import MIN_SIMILARITY, _object_embeddings

    def best(words):
        return float((_object_embeddings(encode_text) @ encode_text([words])[0]).max())

    assert best("a teacup") >= MIN_SIMILARITY + 0.02  # the least similar prompt that maps
    assert best("an elephant") <= MIN_SIMILARITY - 0.1  # what "a purple elephant" leaves
    assert parse_prompt(" A Red Chair.").mapped_from is None  # the catalogue text itself
    assert parse_prompt("two orange mugs").mapped_from == "two orange mugs"  # read by words
