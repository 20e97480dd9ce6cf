"""The typed settings the embedded trainer reads from a TAO spec (``train_settings``), and the
``aoideft spec`` command that validates a spec and prints them.

TAO schema defaults fill what a spec leaves out (``spec.schema_default``); every cross-field rule is
an InputError naming the key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aoideft.errors import InputError
from aoideft.spec import clamp_checkpoint_interval, get_dotted, load_spec, schema_default, validate_spec
from aoideft.spec_unhonoured import is_set

_AUG = "dataset.classify.augmentation_config"


@dataclass(frozen=True)
class AugmentationSettings:
    """Training-time augmentation, from ``dataset.classify.augmentation_config``.

    Probabilities are the chance that the transform is applied to a pair (test and golden get the
    same transform). ``augment`` is the master switch. ``scale_range`` is the range of the crop side
    as a fraction of the image side (0 < low <= high <= 1): a random square crop of that size is
    resized back to full size, i.e. a zoom-in. TAO's ``with_scale_random_crop.scale_range`` is the
    equivalent rescale-factor range (rescale by s >= 1, crop back to size); train_settings converts
    a TAO factor range [a, b] to the fraction range (1/b, 1/a). ``rgb_mean``/``rgb_std`` normalise
    images scaled to [0, 1].
    """

    augment: bool = False
    hflip_probability: float = 0.5
    vflip_probability: float = 0.5
    flip_enabled: bool = True
    rotate_probability: float = 0.5
    angle_list: tuple[float, ...] = (90, 180, 270)
    rotate_enabled: bool = True
    color_enabled: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.3
    color_probability: float = 0.5
    scale_crop_enabled: bool = True
    scale_range: tuple[float, float] = (0.8, 1.0)
    rgb_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    rgb_std: tuple[float, ...] = (0.226, 0.226, 0.226)


@dataclass(frozen=True)
class TrainSettings:
    """Everything the embedded trainer reads from a spec, typed, defaulted and cross-checked.

    ``lights`` are the input_map keys ordered by their value (the image order within a pair).
    ``loss`` is always 'ce' and ``optimizer`` 'adamw' or 'sgd' (TAO's 'contrastive'/'adam' are
    mapped, see UNHONOURED_KEYS). Dataset paths are None when the spec leaves them empty.
    """

    num_epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    policy: str
    cls_weight: tuple[float, float]
    loss: str
    fpratio_sampling: float
    seed: int
    validation_interval: int
    checkpoint_interval: int
    pretrained_model_path: str | None
    lights: tuple[str, ...]
    image_ext: str
    image_width: int
    image_height: int
    concat_type: str
    grid_x: int
    grid_y: int
    difference_module: str
    learnable_difference_modules: int
    embed_dec: int
    augmentation: AugmentationSettings
    train_csv: str | None
    train_images_dir: str | None
    val_csv: str | None
    val_images_dir: str | None
    infer_csv: str | None
    infer_images_dir: str | None
    workers: int


def _setting(spec: dict, key: str) -> Any:
    """The spec's value, or TAO's schema default when the spec is silent (missing or null)."""
    value = get_dotted(spec, key)
    return schema_default(key) if value is None else value


def _error(source: str, key: str, why: str) -> InputError:
    return InputError(f"{source}: spec key '{key}' {why}")


def _number_tuple(spec: dict, key: str, source: str, length: int | None = None) -> tuple[float, ...]:
    value = _setting(spec, key)
    if not isinstance(value, (list, tuple)) or any(
            isinstance(item, bool) or not isinstance(item, (int, float)) for item in value):
        raise _error(source, key, f"must be a list of numbers, got {value!r}")
    if length is not None and len(value) != length:
        raise _error(source, key, f"must have {length} entries, got {len(value)} ({list(value)})")
    return tuple(float(item) for item in value)


def _lights(spec: dict, source: str) -> tuple[str, ...]:
    key = "dataset.classify.input_map"
    input_map = _setting(spec, key)
    if not isinstance(input_map, Mapping) or not input_map:
        raise _error(source, key, "must map each lighting name to its position, e.g. {SolderLight: 0}")
    positions = list(input_map.values())
    if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in positions) \
            or len(set(positions)) != len(positions):
        raise _error(source, key, f"must give each light a distinct position 0, 1, ..., got {dict(input_map)}")
    lights = tuple(str(light) for light, _ in sorted(input_map.items(), key=lambda item: item[1]))
    num_input = int(_setting(spec, "dataset.classify.num_input"))
    if num_input != len(lights):
        raise _error(source, "dataset.classify.num_input",
                     f"is {num_input} but dataset.classify.input_map has {len(lights)} light(s) "
                     f"({', '.join(lights)}); make them agree")
    return lights


def _dataset_paths(spec: dict, split: str, base_dir: Path | None) -> tuple[str | None, str | None]:
    def resolve(value: Any) -> str | None:
        if not is_set(value):
            return None
        path = Path(str(value))
        return str(base_dir / path) if base_dir is not None and not path.is_absolute() else str(path)

    section = f"dataset.classify.{split}_dataset"
    return resolve(get_dotted(spec, f"{section}.csv_path")), resolve(get_dotted(spec, f"{section}.images_dir"))


def _augmentation(spec: dict, source: str) -> AugmentationSettings:
    scale_key = f"{_AUG}.with_scale_random_crop.scale_range"
    low, high = _number_tuple(spec, scale_key, source, length=2)
    if not 1.0 <= low <= high:
        raise _error(source, scale_key, f"must be [low, high] rescale factors with 1 <= low <= high "
                                        f"(TAO zooms in by a factor in that range), got {[low, high]}")
    mean = _number_tuple(spec, f"{_AUG}.rgb_input_mean", source, length=3)
    std = _number_tuple(spec, f"{_AUG}.rgb_input_std", source, length=3)
    if min(std) <= 0:
        raise _error(source, f"{_AUG}.rgb_input_std", f"must be positive, got {list(std)}")
    angles = _number_tuple(spec, f"{_AUG}.random_rotate.angle_list", source)
    rotate_enabled = bool(_setting(spec, f"{_AUG}.random_rotate.enable"))
    if rotate_enabled and not angles:
        raise _error(source, f"{_AUG}.random_rotate.angle_list", "is empty but random_rotate is enabled")

    def value(key: str, kind: type) -> Any:
        return kind(_setting(spec, f"{_AUG}.{key}"))

    return AugmentationSettings(
        augment=value("augment", bool),
        hflip_probability=value("random_flip.hflip_probability", float),
        vflip_probability=value("random_flip.vflip_probability", float),
        flip_enabled=value("random_flip.enable", bool),
        rotate_probability=value("random_rotate.rotate_probability", float),
        angle_list=angles,
        rotate_enabled=rotate_enabled,
        color_enabled=value("random_color.enable", bool),
        brightness=value("random_color.brightness", float),
        contrast=value("random_color.contrast", float),
        saturation=value("random_color.saturation", float),
        hue=value("random_color.hue", float),
        color_probability=value("random_color.color_probability", float),
        scale_crop_enabled=value("with_scale_random_crop.enable", bool),
        scale_range=(1.0 / high, 1.0 / low),
        rgb_mean=mean,
        rgb_std=std,
    )


def train_settings(spec: dict, base_dir: str | Path | None = None, *, source: str = "spec") -> TrainSettings:
    """Validate ``spec`` (validate_spec) and build the trainer's settings from it.

    TAO schema defaults fill what the spec leaves out. Relative dataset csv_path/images_dir are
    resolved against ``base_dir`` when given. Cross-field rules raise InputError naming the key.
    ``source`` names the spec in messages.
    """
    validate_spec(spec, source)
    task = get_dotted(spec, "task")
    if task not in (None, "classify"):
        raise _error(source, "task", f"must be 'classify' (the embedded model is a ChangeNet "
                                     f"classifier), got {task!r}")
    for key, required in (("dataset.classify.num_classes", 2), ("dataset.classify.num_golden", 1)):
        if int(_setting(spec, key)) != required:
            raise _error(source, key, f"must be {required} for the embedded model (binary PASS/defect "
                                      f"with one golden image), got {_setting(spec, key)!r}")

    lights = _lights(spec, source)
    num_epochs = int(_setting(spec, "train.num_epochs"))
    checkpoint_interval = int(_setting(spec, "train.checkpoint_interval"))
    if checkpoint_interval > num_epochs:
        raise _error(source, "train.checkpoint_interval",
                     f"({checkpoint_interval}) must be <= train.num_epochs ({num_epochs}); TAO asserts this too")
    batch_size = int(_setting(spec, "dataset.classify.batch_size"))
    if batch_size < 2:
        raise _error(source, "dataset.classify.batch_size", f"must be at least 2 for training (TAO "
                                                            f"asserts this too), got {batch_size}")
    sizes = {key: _setting(spec, f"dataset.classify.{key}") for key in ("image_width", "image_height")}
    for key, size in sizes.items():
        if int(size) < 1:
            raise _error(source, f"dataset.classify.{key}", f"must be a positive number of pixels, got {size!r}")
    image_ext = str(_setting(spec, "dataset.classify.image_ext"))
    if not image_ext.startswith("."):
        raise _error(source, "dataset.classify.image_ext", f"must start with a dot (e.g. '.jpg'), got {image_ext!r}")

    concat_type = str(_setting(spec, "dataset.classify.concat_type"))
    grid_key = "dataset.classify.grid_map"
    grid = _setting(spec, grid_key)
    grid_x, grid_y = (grid[axis] if isinstance(grid, Mapping) and axis in grid else 0 for axis in ("x", "y"))
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in (grid_x, grid_y)):
        raise _error(source, grid_key, f"must be {{x: <columns>, y: <rows>}} with positive integers, got {grid!r}")
    if concat_type == "grid" and grid_x * grid_y < len(lights):
        raise _error(source, grid_key, f"{grid_x}x{grid_y} has fewer cells than the {len(lights)} lights "
                                       f"of dataset.classify.input_map")

    modules = int(_setting(spec, "model.classify.learnable_difference_modules"))
    if not 1 <= modules <= 4:
        raise _error(source, "model.classify.learnable_difference_modules", f"must be 1 to 4, got {modules}")
    cls_weight = _number_tuple(spec, "train.classify.cls_weight", source, length=2)
    if min(cls_weight) <= 0:
        raise _error(source, "train.classify.cls_weight", f"must be two positive weights [PASS, defect], "
                                                          f"got {list(cls_weight)}")
    optimizer = str(_setting(spec, "train.optim.optim"))
    pretrained = _setting(spec, "train.pretrained_model_path")
    base = Path(base_dir) if base_dir is not None else None
    train_csv, train_images = _dataset_paths(spec, "train", base)
    val_csv, val_images = _dataset_paths(spec, "validation", base)
    infer_csv, infer_images = _dataset_paths(spec, "infer", base)

    return TrainSettings(
        num_epochs=num_epochs,
        batch_size=batch_size,
        lr=float(_setting(spec, "train.optim.lr")),
        optimizer="adamw" if optimizer == "adam" else optimizer,
        momentum=float(_setting(spec, "train.optim.momentum")),
        weight_decay=float(_setting(spec, "train.optim.weight_decay")),
        policy=str(_setting(spec, "train.optim.policy")),
        cls_weight=cls_weight,  # type: ignore[arg-type]  # length checked above
        loss="ce",
        fpratio_sampling=float(_setting(spec, "dataset.classify.fpratio_sampling")),
        seed=int(_setting(spec, "train.seed")),
        validation_interval=int(_setting(spec, "train.validation_interval")),
        checkpoint_interval=checkpoint_interval,
        pretrained_model_path=str(pretrained) if is_set(pretrained) else None,
        lights=lights,
        image_ext=image_ext,
        image_width=int(sizes["image_width"]),
        image_height=int(sizes["image_height"]),
        concat_type=concat_type,
        grid_x=grid_x,
        grid_y=grid_y,
        difference_module=str(_setting(spec, "model.classify.difference_module")),
        learnable_difference_modules=modules,
        embed_dec=int(_setting(spec, "model.classify.embed_dec")),
        augmentation=_augmentation(spec, source),
        train_csv=train_csv,
        train_images_dir=train_images,
        val_csv=val_csv,
        val_images_dir=val_images,
        infer_csv=infer_csv,
        infer_images_dir=infer_images,
        workers=int(_setting(spec, "dataset.classify.workers")),
    )



def main(argv: list[str] | None = None) -> int:
    """``aoideft spec SPEC.yaml``: validate a TAO spec, print the notes and the resolved settings."""
    parser = argparse.ArgumentParser(prog="aoideft spec", description=main.__doc__)
    parser.add_argument("spec", help="TAO spec YAML (e.g. specs/baseline_spec.yaml)")
    parser.add_argument("--base-dir", help="directory that relative dataset paths are relative to")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        notes = validate_spec(spec, args.spec)
        clamped = clamp_checkpoint_interval(spec)  # as every job spec the workflow writes
        settings = train_settings(spec, args.base_dir, source=args.spec)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in [*notes, *([clamped] if clamped else [])]:
        print(f"note: {note}")
    for name, value in vars(settings).items():
        print(f"{name}: {value}")
    return 0
