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


def test_minilm_maps_near_words_and_refuses_far_ones():
    assert parse_prompt("a coffee cup").text == "a mug"
    assert parse_prompt("a red sofa").text == "a red chair"
    with pytest.raises(ValueError, match="objects: chair, cone, cube"):
        parse_prompt("a banana")
