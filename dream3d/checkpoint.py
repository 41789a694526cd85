"""The one checkpoint/resume helper every training loop uses, and the one reader of weights files.

A checkpoint is a dict written by ``torch.save`` that loads with ``weights_only=True``: each
stateful part (an ``nn.Module``, optimizer, scheduler, guidance: anything with
``state_dict``/``load_state_dict``; a ``torch.Generator`` by ``get_state``/``set_state``) is
stored as its state, every other value (numbers, lists, dicts of tensors) as is. Writes are
atomic (a temporary file, then ``os.replace``), so a crash mid-write keeps the last good
checkpoint. A file that is missing, cut short, damaged (its zip checksums) or not a checkpoint
is one ValueError line. A shipped weights file (in dream3d/weights/) is checked against the
sha256 in the json log beside it before it is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from dream3d.config import config_yaml


def _reason(err: BaseException, limit: int = 120) -> str:
    """The first non-empty line of an exception's message, shortened: a reason in brackets."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _state(value: Any) -> Any:
    """What the file holds for ``value``: its state if it has one, else the value itself."""
    if isinstance(value, torch.Generator):
        return value.get_state()
    if hasattr(value, "state_dict") and hasattr(value, "load_state_dict"):
        return value.state_dict()
    return value


def save_checkpoint(path: Path | str, **parts: Any) -> None:
    """Write ``{name: state of part}`` to ``path`` atomically; it loads with weights_only=True.

    The archive is made in memory, then written to a temporary file beside ``path`` and
    moved over it, so a full disk or a kill at any moment leaves the last good checkpoint and
    no temporary file (one OSError naming the path and the cause, e.g. no space left)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({name: _state(value) for name, value in parts.items()}, buffer)
    write_atomic(path, buffer.getbuffer())


def save_weights(path: Path | str, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """A safetensors weights file, written as checkpoints are (``write_atomic``), so a full
    disk never leaves half a file where ``read_weights`` would look."""
    from safetensors.torch import save

    write_atomic(Path(path), save(tensors, metadata=metadata))


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """``data`` into ``path`` by a temporary file and a rename: ``path`` is either as it was
    or complete, and the temporary file is gone whatever happens."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not err.filename:  # a write's error names no file
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def resume_point(out: Path, config) -> bool:
    """Where ``--resume`` into ``out`` starts ``config``'s run: from its checkpoint (read and
    checked here, before anything is written): True; from step 0 where a run of this same
    config stopped before its first checkpoint (OUT/config.yaml describes it; a note says
    so): False. A ValueError otherwise."""
    path = Path(out) / "checkpoint.pt"
    if path.is_file():
        read_checkpoint(path)
        return True
    saved = Path(out) / "config.yaml"
    try:
        same = yaml.safe_load(saved.read_text()) == yaml.safe_load(config_yaml(config))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        same = False
    if not same:
        raise ValueError(f"--resume: no checkpoint at {path}")
    print(
        f"dream3d: {out} has no checkpoint yet (the run stopped before its first): "
        "starting it again from step 0",
        file=sys.stderr,
    )
    return False


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """The dict a ``save_checkpoint`` file holds, on the CPU; a ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot resume: no checkpoint at {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise _not_checkpoint(path, "not a torch.save archive: another format, or cut short")
    try:  # every member's CRC: torch.load checks none, so a flipped byte would load as a weight
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as err:  # zip, I/O and decompression errors
        raise _not_checkpoint(path, _reason(err)) from None
    if damaged is not None:
        raise _not_checkpoint(path, f"damaged: {damaged} fails its checksum")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message is a page about its 2.6 defaults
        reason = "weights_only=True refuses it: objects beyond tensors and plain values"
        raise _not_checkpoint(path, reason) from None
    except Exception as err:  # a zip but not torch's: zip and runtime errors
        raise _not_checkpoint(path, _reason(err)) from None
    if not isinstance(blob, dict):
        raise _not_checkpoint(path, f"it holds a {type(blob).__name__}, not a dict")
    return blob


def _not_checkpoint(path: Path | str, reason: str) -> ValueError:
    """The one-line error for a file that cannot be resumed from."""
    return ValueError(f"cannot resume: {path} is not a dream3d checkpoint ({reason})")


def load_checkpoint(path: Path | str, *keys: str, **parts: Any) -> dict[str, Any]:
    """Restore each stateful part in place from ``path``; return ``{key: value}`` for ``keys``.

    Every part and key must be in the file (else: not a dream3d checkpoint); a state that does
    not fit its part (another architecture) is a ValueError saying so.
    """
    blob = read_checkpoint(path)
    missing = [name for name in (*parts, *keys) if name not in blob]
    if missing:
        raise _not_checkpoint(path, f"no {', '.join(missing)}")
    for name, part in parts.items():
        try:
            _restore(part, blob[name])
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise ValueError(
                f"cannot resume: {path} does not fit this run ({name}: {_reason(err)})"
            ) from None
    return {key: blob[key] for key in keys}


def _restore(part: Any, state: Any) -> None:
    """Put ``state`` back into ``part``; a module's keys and shapes are checked first."""
    if isinstance(part, torch.Generator):
        part.set_state(state)
        return
    if isinstance(part, nn.Module):
        mismatch = state_mismatch(part, state)
        if mismatch:
            raise ValueError(mismatch)
    part.load_state_dict(state)


def state_mismatch(module: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """'' if ``state`` fits ``module`` key for key and shape for shape, else a short reason."""
    own = module.state_dict()
    for what, names in (("missing", own.keys() - state), ("unexpected", state.keys() - own)):
        if names:
            first = sorted(names)[:2]
            more = f" and {len(names) - 2} more" if len(names) > 2 else ""
            return f"{what} tensors {', '.join(first)}{more}"
    for name, value in own.items():
        got = tuple(getattr(state[name], "shape", ()))
        if got != tuple(value.shape):
            return f"{name} has shape {got}, expected {tuple(value.shape)}"
    return ""


SHIPPED = Path(__file__).resolve().parent / "weights"  # the weights that ship with dream3d
_checked: dict[tuple, str] = {}  # (path, size, mtime) -> its sha256, hashed once a process


def check_shipped(path: Path | str) -> None:
    """If ``path`` is one of the shipped files, ValueError (one line naming it) unless its
    sha256 is the one in the json log beside it."""
    path = Path(path).resolve()
    log = path.with_suffix(".json")
    if path.parent != SHIPPED.resolve() or not log.is_file():
        return
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _checked:
        _checked[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        want = json.loads(log.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{log} is not a weights log with a sha256; reinstall dream3d") from None
    if _checked[key] != want:
        raise ValueError(
            f"{path} is not the file shipped with dream3d (sha256 {_checked[key][:12]}..., its "
            f"log {log.name} says {want[:12]}...): it was replaced or damaged; restore it "
            f"(git checkout -- dream3d/weights/{path.name}, or reinstall dream3d)"
        )


def read_weights(path: Path | str, what: str, meta_keys: tuple[str, ...] = ("config",)):
    """(tensors, metadata) of a safetensors weights file; one ValueError line naming ``path``.

    ``what`` names the kind of file in the message ("tiny-teacher"); ``meta_keys`` must be in
    its metadata.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} weights not found: {path}")
    check_shipped(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (no __iter__)
    except Exception as err:  # safetensors' own error type for anything it cannot parse
        raise not_weights(path, what, err) from None
    missing = [key for key in meta_keys if key not in meta]
    if missing:
        raise not_weights(path, what, f"no {', '.join(missing)} in its metadata")
    return tensors, meta


def not_weights(path: Path | str, what: str, reason: BaseException | str) -> ValueError:
    """The one-line error for a weights file that is not what it should be."""
    text = reason if isinstance(reason, str) else _reason(reason)
    return ValueError(f"{path} is not a {what} safetensors file ({text})")
