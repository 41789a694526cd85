"""One config tree: nested dataclasses built from plain dicts (yaml, ``--set a.b=v``), checked.

Each component owns a dataclass holding the one default of each of its settings; an
experiment's config nests them. ``from_dict`` builds such a tree from a dict, checking every
key and the type of every value (ranges and cross-setting rules are each component's own
``__post_init__`` checks, ranges through ``check_ranges``, so every experiment gets them),
so bad input is one ValueError naming the setting, whatever the door: yaml, the command
line or Python. A field whose metadata names ``variants`` (name -> config class, read from
a registry) holds the config of the variant named by the dict's ``name`` key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


def variants(registry: dict, defaults: dict | None = None) -> dict:
    """Field metadata: the field holds the config of one of ``registry``'s entries, each
    entry a (class, config class) pair or a config class; ``defaults`` (name -> config) are
    the experiment's own starting configs of variants other than the field's default."""
    return {"variants": registry, "defaults": defaults or {}}


def _config_class(registry: dict, name: str, where: str):
    if name not in registry:
        raise ValueError(f"{where}: unknown name {name!r}; choose one of: {', '.join(registry)}")
    entry = registry[name]
    return entry[1] if isinstance(entry, tuple) else entry


def variant_name(registry: dict, config) -> str:
    """The registry name whose config class ``config`` is."""
    for name in registry:
        if type(config) is _config_class(registry, name, ""):
            return name
    raise ValueError(f"{type(config).__name__} is in no registry entry")


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def from_dict(cls, values: dict | None, where: str = ""):
    """An instance of dataclass ``cls`` from ``values``; missing keys keep their defaults.
    ``where`` (the dotted path of this node) starts every error message."""
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ValueError(_at(where, f"expected a mapping of settings, got {values!r}"))
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(fields)
        raise ValueError(_at(where, f"unknown setting {', '.join(unknown)}; known: {known}"))
    kwargs = {}
    for name, value in values.items():
        f, key = fields[name], f"{where}.{name}" if where else name
        value = _on_field_default(f, value)
        if "variants" in f.metadata:
            kwargs[name] = _variant(f.metadata["variants"], value, key, _default_name(f))
        else:
            kwargs[name] = coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except SettingError as err:  # a range check: named by its full path
        raise SettingError(f"{where}.{err.path}" if where else err.path, err.rule) from None
    except (TypeError, ValueError) as err:  # a cross-setting rule, or a required field left out
        raise ValueError(_at(where, str(err))) from None


def _on_field_default(f: dataclasses.Field, value):
    """A nested node's settings laid on the field's own default, which an experiment may set
    apart from the class's (distill's TrainConfig trains images, not a NeRF); a variant
    node naming another variant starts from the field's ``defaults`` for it, else from that
    variant's class defaults."""
    if not isinstance(value, dict) or f.default_factory is dataclasses.MISSING:
        return value
    default = f.default_factory()
    if not dataclasses.is_dataclass(default):
        return value
    if "variants" not in f.metadata:
        return merge(to_dict(default), value)
    name = value.get("name", variant_name(f.metadata["variants"], default))
    if name != variant_name(f.metadata["variants"], default):
        default = f.metadata["defaults"].get(name)
        if default is None:
            return value
    return merge({"name": name, **to_dict(default)}, value)


def _default_name(f: dataclasses.Field) -> str | None:
    if f.default_factory is dataclasses.MISSING:
        return None
    return variant_name(f.metadata["variants"], f.default_factory())


def _variant(registry: dict, value, where: str, default: str | None):
    """The config of the variant ``value["name"]`` names (``default`` if it names none)."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping of settings, got {value!r}")
    name = value.get("name", default)
    if name is None:
        raise ValueError(f"{where}: name one of: {', '.join(registry)}")
    rest = {k: v for k, v in value.items() if k != "name"}
    return from_dict(_config_class(registry, name, where), rest, where)


def coerce(value, hint, where: str):
    """``value`` as type ``hint`` (int, float, bool, str, Path, Literal, tuple, X | None,
    a dataclass), else a ValueError naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of: {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        return _tuple(value, args, where)
    return _scalar(value, hint, where)


def _tuple(value, args, where: str) -> tuple:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(v, args[0], where) for v in value)
    if len(value) != len(args):
        raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
    return tuple(coerce(v, a, where) for v, a in zip(value, args))


def _finite_float(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# type -> (read a value as that type, or None; what the message says was expected)
_SCALARS = {
    bool: (lambda v: v if isinstance(v, bool) else None, "true or false"),
    int: (
        lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None,
        "a whole number",
    ),
    float: (_finite_float, "a finite number"),
    str: (lambda v: v if isinstance(v, str) else None, "text"),
}


def _scalar(value, hint, where: str):
    if hint is Path:
        return Path(value)
    if hint not in _SCALARS:
        return value
    read, expected = _SCALARS[hint]
    result = read(value)
    if result is None:
        raise ValueError(f"{where}: expected {expected}, got {value!r}")
    return result


@dataclasses.dataclass(frozen=True)
class Range:
    """Where a number setting may lie: from ``low`` to ``high``, each end in or out."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # ``low`` itself is out of range
    high_open: bool = False  # ``high`` itself is out of range

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        ends = ("(" if self.low_open else "[", ")" if self.high_open else "]")
        return f"in {ends[0]}{self.low:g}, {self.high:g}{ends[1]}"


AT_LEAST_1 = Range(1)  # counts and sizes
NON_NEGATIVE = Range(0)  # weights, thresholds, step counts that may be zero
POSITIVE = Range(0, low_open=True)  # rates, lengths, scales
UNIT = Range(0, 1)  # probabilities and fractions


class SettingError(ValueError):
    """A setting out of its range; ``from_dict`` lengthens ``path`` to the setting's place in
    the whole tree ("samples" -> "nerf.render.samples")."""

    def __init__(self, path: str, rule: str):
        super().__init__(f"{path} {rule}")
        self.path, self.rule = path, rule


def check_ranges(config, ranges: dict[str, Range]) -> None:
    """A SettingError naming the first setting of ``ranges`` (dotted paths into ``config``,
    a component's own __post_init__ check) whose number, or one of whose numbers, is out of
    its range. A path ``config`` lacks and an unset (None) value are skipped."""
    missing = object()
    for path, allowed in ranges.items():
        value = config
        for part in path.split("."):
            value = getattr(value, part, missing)
        numbers = value if isinstance(value, tuple) else (value,)
        for x in numbers:
            if x is not missing and x is not None and x not in allowed:
                raise SettingError(path, f"must be {allowed}, got {x}")


def to_dict(config) -> dict:
    """The tree as plain yaml-able values; variant fields carry their ``name``."""
    out = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            node = to_dict(value)
            if "variants" in f.metadata:
                node = {"name": variant_name(f.metadata["variants"], value), **node}
            value = node
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        out[f.name] = value
    return out


def merge(base: dict, over: dict) -> dict:
    """``over`` laid on ``base``, nested dicts merged key by key. A variant node whose
    ``name`` changes starts from that variant's defaults, not from the old one's settings."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            renamed = "name" in value and value["name"] != old.get("name")
            out[key] = dict(value) if renamed else merge(old, value)
        else:
            out[key] = value
    return out


def dotted(pairs: dict[str, Any]) -> dict:
    """{"guidance.cfg_scale": 30} -> {"guidance": {"cfg_scale": 30}}; None values skipped."""
    tree: dict = {}
    for path, value in pairs.items():
        if value is None:
            continue
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def parse_set(text: str) -> tuple[str, Any]:
    """``"a.b=30"`` -> ("a.b", 30): the value is read as yaml (numbers, true/false, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        raise ValueError(f"--set expects KEY.PATH=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def config_yaml(config) -> str:
    """The whole tree as OUT/config.yaml holds it."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def write_config(config, out: Path) -> None:
    """OUT/config.yaml: the whole tree a run or distillation was made with (whole or as it
    was, as checkpoints are written)."""
    from dream3d.checkpoint import write_atomic

    write_atomic(Path(out) / "config.yaml", config_yaml(config).encode())


def load_yaml(path: Path) -> dict:
    """A yaml file holding a mapping; a missing, unreadable or malformed file is one line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no config file at {path}")
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ValueError(f"{path} is not valid yaml{line}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    return values
