"""Laws that hold for every input, checked on inputs hypothesis draws (and shrinks on failure).

Each law is worked out on paper, not read off the code: noising and denoising invert each
other; compositing weights telescope to 1 - exp(-sum sigma delta); IoU is |a & b| / |a | b|
of two sets; a config written as yaml reads back as the same config.
"""

import dataclasses
import math
import types
import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from dream3d.config import from_dict, to_dict
from dream3d.diffusion import SCHEDULES, add_noise, alphas_cumprod, eps_from_prediction, predict_x0
from dream3d.pipelines.text_to_3d import TextTo3DConfig
from generators.nerf.render import composite, volume_weights
from scenes.score import iou

FAST = settings(max_examples=60, deadline=None)
ABAR = {kind: alphas_cumprod(kind) for kind in SCHEDULES}  # T = 1000 steps, float64


def _tensor(shape, values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).reshape(shape)


@st.composite
def noising(draw):
    """(x0, eps (B, 4), t (B,), abar): any values in [-50, 50], any of the T steps."""
    b = draw(st.integers(1, 4))
    value = st.floats(-50, 50, allow_nan=False)
    x0 = _tensor((b, 4), draw(st.lists(value, min_size=4 * b, max_size=4 * b)))
    eps = _tensor((b, 4), draw(st.lists(value, min_size=4 * b, max_size=4 * b)))
    t = torch.tensor(draw(st.lists(st.integers(0, 999), min_size=b, max_size=b)))
    return x0, eps, t, ABAR[draw(st.sampled_from(SCHEDULES))]


@FAST
@given(noising())
def test_predict_x0_inverts_add_noise_for_any_x0_eps_and_t(case):
    x0, eps, t, abar = case
    x_t = add_noise(x0, t, eps, abar)
    # x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, by hand from the schedule's table
    ab = abar[t][:, None]
    assert torch.allclose(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, rtol=0, atol=1e-12)
    # 1 / a_t <= 1 / sqrt(abar_999) = 157 (DDPM's linear schedule) scales round-off of
    # |x_t| <= 100 to ~1e-12
    x0_back = predict_x0(x_t, t, eps, abar)
    assert torch.allclose(x0_back, x0, rtol=0, atol=1e-10)
    assert torch.allclose(add_noise(x0_back, t, eps, abar), x_t, rtol=0, atol=1e-10)


@FAST
@given(noising())
def test_v_and_x0_predictions_give_back_the_noise(case):
    """v = a_t eps - s_t x0 (Salimans & Ho 2022) and x0 itself both name eps exactly."""
    x0, eps, t, abar = case
    x_t = add_noise(x0, t, eps, abar)
    a, s = abar[t][:, None].sqrt(), (1 - abar[t][:, None]).sqrt()
    v = a * eps - s * x0
    assert torch.allclose(eps_from_prediction(v, x_t, t, abar, "v"), eps, rtol=0, atol=1e-10)
    # 1 / s_t <= 1 / sqrt(1 - abar_0) ~ 100 (linear schedule): still far below 1e-9
    from_x0 = eps_from_prediction(x0, x_t, t, abar, "sample")
    assert torch.allclose(from_x0, eps, rtol=0, atol=1e-9)


@st.composite
def rays(draw):
    """Densities sigma >= 0 and bin lengths delta >= 0, (R, S), float64: empty space, solid
    walls (sigma delta up to 1e4) and everything between."""
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 12))
    sigma = st.one_of(st.just(0.0), st.floats(0, 1e3, allow_nan=False))
    delta = st.one_of(st.just(0.0), st.floats(0, 10, allow_nan=False))
    sigmas = draw(st.lists(sigma, min_size=r * s, max_size=r * s))
    deltas = draw(st.lists(delta, min_size=r * s, max_size=r * s))
    return _tensor((r, s), sigmas), _tensor((r, s), deltas)


@FAST
@given(rays())
def test_compositing_weights_are_non_negative_and_sum_to_the_opacity(case):
    sigmas, deltas = case
    weights, trans, alphas = volume_weights(sigmas, deltas)
    assert (weights >= 0).all() and (alphas >= 0).all() and (alphas <= 1).all()
    # T_0 = 1; T never grows along a ray (but for round-off: the exclusive prefix sum is
    # cumsum(tau) - tau, so (5.6 + 251) - 251 may come back a few ulp above 5.6)
    assert torch.equal(trans[:, 0], torch.ones(len(trans), dtype=trans.dtype))
    assert (trans[:, 1:] <= trans[:, :-1] * (1 + 1e-12)).all()
    # sum_i T_i (1 - e^{-tau_i}) telescopes to 1 - T_S = 1 - exp(-sum_i tau_i) <= 1
    opacity = composite(weights)[:, 0]
    expected = [1 - math.exp(-sum(a * b for a, b in zip(s, d))) for s, d in zip(sigmas, deltas)]
    assert opacity.tolist() == pytest.approx(expected, abs=1e-12)
    assert (opacity <= 1 + 1e-12).all()
    # an rgb of all-ones colours composites to the opacity itself
    ones = torch.ones(*weights.shape, 3, dtype=weights.dtype)
    assert torch.allclose(composite(weights, ones), opacity[:, None].expand(-1, 3), atol=1e-12)


@FAST
@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=24))  # (in a, in b) per item
def test_iou_is_the_set_ratio_symmetric_and_one_on_itself(pairs):
    a = torch.tensor([p for p, _ in pairs], dtype=torch.bool)
    b = torch.tensor([q for _, q in pairs], dtype=torch.bool)
    sa = {i for i, (p, _) in enumerate(pairs) if p}
    sb = {i for i, (_, q) in enumerate(pairs) if q}
    # the code's convention: two empty sets agree perfectly (IoU 1)
    expected = len(sa & sb) / len(sa | sb) if sa | sb else 1.0
    assert iou(a, b) == pytest.approx(expected, abs=1e-15)
    assert iou(a, b) == iou(b, a)
    assert iou(a, a) == 1.0 and iou(b, b) == 1.0
    assert iou(a, ~a) == (1.0 if len(pairs) == 0 else 0.0)  # disjoint; empty and empty: 1
    assert 0.0 <= iou(a, b) <= 1.0


def _hint_strategy(hint, default):
    """Values of type ``hint`` near a field's ``default``: what a yaml file or --set may hold."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return st.one_of(st.none(), _hint_strategy(inner[0], default))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:  # (lo, hi) ranges are sorted; the light's direction is any order
        ds = default if isinstance(default, tuple) else (None,) * len(args)
        return st.tuples(*(_hint_strategy(a, d) for a, d in zip(args, ds))).map(
            lambda v: tuple(sorted(v)) if all(isinstance(x, float) for x in v) else v
        )
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(1, max(2 * (default or 0), 8))
    if hint is float:  # mostly where the range checks allow, now and then a negative one
        top = max(2 * abs(default or 0.0), 1.0)
        return st.floats(-top / 8, top, allow_nan=False, allow_infinity=False)
    if hint in (str, Path):
        return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
    raise NotImplementedError(hint)


def _node(cls, name: str | None = None):
    """A nested dict of some of ``cls``'s settings, drawn by type; nested configs recurse,
    a variant field draws one of its registry's entries (with its ``name``)."""
    hints, default = typing.get_type_hints(cls), None
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
           for f in fields):  # fmt: skip
        default = cls()
    optional = {}
    for f in fields:
        value = getattr(default, f.name, None)
        if "variants" in f.metadata:
            registry = f.metadata["variants"]
            optional[f.name] = st.one_of(*(_variant(registry, n) for n in registry))
        elif dataclasses.is_dataclass(hints[f.name]):
            optional[f.name] = _node(hints[f.name])
        else:
            optional[f.name] = _hint_strategy(hints[f.name], value)
    required = {"name": st.just(name)} if name else {}
    return st.fixed_dictionaries(required, optional=optional)


def _variant(registry: dict, name: str):
    entry = registry[name]
    return _node(entry[1] if isinstance(entry, tuple) else entry, name)


PROMPTS = st.one_of(
    st.sampled_from(["a chair", "a red cube", "a blue sphere"]), st.text(min_size=1)
)


@settings(max_examples=50, deadline=None)
@given(_node(TextTo3DConfig), PROMPTS)
def test_any_text_to_3d_config_survives_a_yaml_round_trip(tree, prompt):
    try:
        config = from_dict(TextTo3DConfig, tree | {"prompt": prompt})
    except ValueError:  # a range check said no (steps 0, t_min > t_max, ...): not a config
        reject()
    text = yaml.safe_dump(to_dict(config))
    again = from_dict(TextTo3DConfig, yaml.safe_load(text))
    assert again == config
    assert yaml.safe_dump(to_dict(again)) == text
    assert type(again.guidance) is type(config.guidance)  # the variant keeps its name
    assert type(again.teacher) is type(config.teacher)
