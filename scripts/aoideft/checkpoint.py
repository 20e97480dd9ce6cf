"""ChangeNet-lite checkpoints: a dict of tensors and primitives only, loaded with ``weights_only=True``.

Keys: ``format`` (FORMAT), ``arch`` (``ModelArch.to_dict()``: everything to rebuild the model and feed
it, lights and image_ext included), ``state_dict``, ``epoch`` (0-based), ``step`` (global optimiser
step), ``metrics`` (the epoch's metrics, plain numbers/strings). No pickled Python objects: a checkpoint
carrying one is refused, so loading a file can never run code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from aoideft import fsutil
from aoideft.errors import InputError
from aoideft.model import ChangeNetLite, ModelArch

FORMAT = "aoideft-changenet-lite/1"
REQUIRED_KEYS = ("format", "arch", "state_dict", "epoch", "step", "metrics")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


# TAO's checkpoint names, which ours follow (TAO pads to at least 3 and 5 digits).
CHECKPOINT_NAME = re.compile(r"^model_epoch_(\d+)_step_(\d+)\.pth$")


def checkpoint_name(epoch: int, step: int) -> str:
    """``model_epoch_<EEE>_step_<SSS>.pth`` with the 0-based epoch and the global step."""
    return f"model_epoch_{epoch:03d}_step_{step:05d}.pth"


def epoch_and_step(path: str | Path) -> tuple[int, int]:
    """A checkpoint's (epoch, step): from its name when it has TAO's form (any backend's epoch
    checkpoints), else from the embedded checkpoint's payload (best_val.pth, latest.pth)."""
    match = CHECKPOINT_NAME.match(Path(path).name)
    if match:
        return int(match.group(1)), int(match.group(2))
    payload = load_checkpoint(path)
    return int(payload["epoch"]), int(payload["step"])


def save_checkpoint(path: str | Path, model: ChangeNetLite, *, epoch: int, step: int, metrics: dict[str, Any]) -> None:
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    fsutil.torch_save(
        path,
        {
            "format": FORMAT,
            "arch": model.arch.to_dict(),
            "state_dict": state,
            "epoch": int(epoch),
            "step": int(step),
            "metrics": dict(metrics),
        },
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; always ``weights_only=True`` (pickled objects are refused)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; pass the path of a .pth written by `aoideft train`.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _UNSUPPORTED_GLOBAL.search(str(error))
        if refused:
            raise InputError(
                f"checkpoint {path} holds a Python object ({refused.group(1)}) besides tensors and plain "
                "values and was refused: only weights-only checkpoints are loaded, so loading never runs code."
            ) from None
        raise InputError(f"checkpoint {path} is not a readable torch file (unpickling failed).") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise InputError(f"checkpoint {path} is not a readable torch file: {str(error).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(
            f"checkpoint {path} is not an aoideft ChangeNet-lite checkpoint (format {found!r}, "
            f"expected {FORMAT!r})."
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise InputError(f"checkpoint {path} lacks the keys {missing}; it is truncated or was edited.")
    return payload


def arch_of(payload: dict[str, Any], path: str | Path) -> ModelArch:
    return ModelArch.from_dict(payload["arch"], source=f"checkpoint {path}")


def build_model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> ChangeNetLite:
    """Rebuild the model a checkpoint describes, load its weights; returned in eval mode."""
    payload = load_checkpoint(path, map_location)
    model = ChangeNetLite(arch_of(payload, path))
    load_state_checked(model, payload["state_dict"], path)
    return model.eval()


def load_pretrained_weights(model: ChangeNetLite, path: str | Path) -> dict[str, Any]:
    """Warm start: copy a checkpoint's weights (only) into ``model``; returns the checkpoint payload."""
    payload = load_checkpoint(path)
    load_state_checked(model, payload["state_dict"], path)
    return payload


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` with one clear message naming the first parameter that does not fit."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise InputError(
                f"checkpoint {path} does not fit this model: it has no parameter {name} (the model needs "
                f"shape {tuple(tensor.shape)}); the architecture differs (e.g. learnable_difference_modules "
                "or difference_module). Train with the checkpoint's architecture or drop the warm start."
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise InputError(
                f"checkpoint {path} does not fit this model: parameter {name} has shape "
                f"{tuple(state[name].shape)} in the checkpoint but {tuple(tensor.shape)} in the model; the "
                "architecture differs (e.g. number of lights, light stacking or widths)."
            )
    unexpected = [name for name in state if name not in expected]
    if unexpected:
        raise InputError(
            f"checkpoint {path} does not fit this model: it has parameter {unexpected[0]} that the model "
            f"lacks (shape {tuple(state[unexpected[0]].shape)}); the architecture differs."
        )
    model.load_state_dict(state)
