"""ChangeNet-lite: a small siamese change classifier for golden/test AOI pairs.

It mirrors TAO's Visual ChangeNet classify head on a CPU-sized backbone:

* one shared backbone (4 stages of conv3x3-BN-ReLU, stride 2, widths w/2w/4w/8w) sees golden and test;
* at the ``learnable_difference_modules`` deepest levels the two feature maps are compared, either by a
  learnable block (conv3x3 on cat(golden, test) -> BN -> ReLU -> conv3x3) or, with
  ``difference_module: euclidean``, by ``|f_test - f_golden|``;
* with ``shift_tolerance_px`` > 0, before that comparison each golden feature is replaced by the best
  match (lowest mean |f_test - f_golden| over a 3x3 neighbourhood) among the golden features up to that
  many input pixels away, rounded to the level's grid: a shift-tolerant difference;
* the difference maps are fused top-down (1x1 projections to a common width; the deeper map is
  upsampled and added), pooled globally (mean and max: a small defect is a local peak that a mean alone
  would dilute), and an MLP with ``embed_dec`` hidden units gives 2 logits (0 = PASS, 1 = defect).

Golden-to-test registration (``align``: ``phase``) is not done here but where a job decodes its pairs
(``inference.decode_for_arch``, once per CSV): the arch only records it, so training, inference and
embedding of one checkpoint all see registered goldens.

Inputs are ``[B, L, C, H, W]`` tensors (uint8, or float in [0, 1]) with one image per light; the model
normalises them with the spec's RGB mean/std and stacks the lights itself, so every caller (trainer,
inference, embedding export) feeds the same thing and cannot forget a step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aoideft import images
from aoideft.errors import InputError

NUM_LEVELS = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LIGHT_STACKINGS = ("spec", "channels")
CONCAT_TYPES = ("linear", "grid")
DIFFERENCE_MODULES = ("learnable", "euclidean")
ALIGNMENTS = ("none", "phase", "phase_blur")  # golden-to-test registration at decode time (registration.py)
MAX_SHIFT_TOLERANCE_PX = 8.0


@dataclass(frozen=True)
class ModelArch:
    """Everything needed to rebuild a ChangeNet-lite and feed it: stored in every checkpoint.

    ``light_stacking`` is an embedded-model option outside the TAO spec: ``spec`` stacks the lights the
    way TAO does (``concat_type`` linear = side by side, grid = tiled); ``channels`` stacks them as
    image channels (a 2-light RGB pair becomes one 6-channel image at the original size).

    ``align``: ``phase`` registers every golden to its test (sub-pixel, up to ``align_max_shift_px``
    input pixels) when a job decodes its pairs, ``phase_blur`` also blurs the sharper image of the
    pair to the other's focus; ``none`` compares them as captured.
    ``shift_tolerance_px``: the shift-tolerant difference's reach in input pixels (0: off). The
    defaults are the behaviour of checkpoints written before these options existed.
    """

    lights: tuple[str, ...] = ("SolderLight",)
    image_ext: str = ".jpg"
    image_width: int = 64
    image_height: int = 64
    channels: int = 3
    light_stacking: str = "spec"
    concat_type: str = "linear"
    grid: tuple[int, int] = (2, 2)
    base_width: int = 16
    difference_module: str = "learnable"
    learnable_difference_modules: int = 4
    embed_dec: int = 30
    rgb_mean: tuple[float, ...] = IMAGENET_MEAN
    rgb_std: tuple[float, ...] = IMAGENET_STD
    align: str = "none"
    align_max_shift_px: float = 4.0
    shift_tolerance_px: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("light_stacking", self.light_stacking, LIGHT_STACKINGS)
        _check_choice("embedded.align", self.align, ALIGNMENTS)
        if not 0 < self.align_max_shift_px <= min(self.image_width, self.image_height) / 4:
            raise InputError(
                "embedded.align_max_shift_px must be above 0 and at most a quarter of the image side "
                f"({min(self.image_width, self.image_height) / 4:g} px), got {self.align_max_shift_px}."
            )
        if not 0 <= self.shift_tolerance_px <= MAX_SHIFT_TOLERANCE_PX:
            raise InputError(
                f"embedded.shift_tolerance_px must be 0 to {MAX_SHIFT_TOLERANCE_PX:g} pixels, got {self.shift_tolerance_px}."
            )
        _check_choice("model.classify.difference_module", self.difference_module, DIFFERENCE_MODULES)
        _check_choice("dataset.classify.concat_type", self.concat_type, CONCAT_TYPES)
        if not 1 <= self.learnable_difference_modules <= NUM_LEVELS:
            raise InputError(
                "model.classify.learnable_difference_modules must be between 1 and 4, "
                f"got {self.learnable_difference_modules}."
            )
        if not 1 <= len(self.lights) <= 4:
            raise InputError(f"dataset.classify.input_map must name 1 to 4 lights, got {list(self.lights)}.")
        if len(self.rgb_mean) != self.channels or len(self.rgb_std) != self.channels:
            raise InputError(
                "dataset.classify.augmentation_config.rgb_input_mean/rgb_input_std need one value per "
                f"image channel ({self.channels}), got {list(self.rgb_mean)} and {list(self.rgb_std)}."
            )
        for name in ("base_width", "embed_dec", "image_width", "image_height", "channels"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"model setting {name} must be a positive integer, got {getattr(self, name)}.")

    @property
    def num_lights(self) -> int:
        return len(self.lights)

    @property
    def input_channels(self) -> int:
        """Channels of the stacked image the backbone sees."""
        return self.channels * self.num_lights if self.light_stacking == "channels" else self.channels

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_width * 2**level for level in range(NUM_LEVELS))

    @property
    def compared_levels(self) -> tuple[int, ...]:
        """Indices of the (deepest) backbone levels whose golden/test features are compared and fused."""
        return tuple(range(NUM_LEVELS - self.learnable_difference_modules, NUM_LEVELS))

    def tolerance_radius(self, level: int) -> int:
        """Feature pixels the shift-tolerant difference searches at ``level`` (stride 2**(level+1)):
        ``shift_tolerance_px`` on the level's grid, rounded half up."""
        return int(self.shift_tolerance_px / 2 ** (level + 1) + 0.5)

    @property
    def fuse_width(self) -> int:
        return 4 * self.base_width

    @property
    def embedding_dim(self) -> int:
        return 2 * self.fuse_width  # mean- and max-pooled fused map

    def to_dict(self) -> dict[str, Any]:
        """Plain lists/str/int/float only, so a checkpoint loads with ``weights_only=True``."""
        out = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
        out["num_lights"] = self.num_lights
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "checkpoint") -> ModelArch:
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(data) - known - {"num_lights"})
        if unknown:
            raise InputError(f"{source}: unknown model arch keys {unknown}; was it written by a newer aoideft?")
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        values.pop("num_lights", None)
        arch = cls(**values)
        if "num_lights" in data and int(data["num_lights"]) != arch.num_lights:
            raise InputError(
                f"{source}: arch says num_lights={data['num_lights']} but lists {arch.num_lights} lights "
                f"{list(arch.lights)}; the checkpoint is inconsistent."
            )
        return arch


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{key} must be one of {list(choices)}, got {value!r}.")


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class Backbone(nn.Module):
    """Four stride-2 conv-BN-ReLU stages; returns the feature map of every stage."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        stages = []
        for width in widths:
            stages.append(conv_bn_relu(in_channels, width, stride=2))
            in_channels = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class LearnableDifference(nn.Module):
    """conv3x3 on cat(golden, test) -> BN -> ReLU -> conv3x3, keeping the level's width.

    The first conv starts as a difference (its test weights are minus its golden weights): that is
    what the block has to learn first anyway, and from a random start some seeds sat on a
    loss plateau for several epochs of a short run.
    """

    def __init__(self, width: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(2 * width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        with torch.no_grad():
            first = self.block[0].weight
            first[:, width:] = -first[:, :width]

    def forward(self, golden: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([golden, test], dim=1))


def best_shifted(golden: torch.Tensor, test: torch.Tensor, radius: int) -> torch.Tensor:
    """``golden`` [B, C, H, W] with each position replaced by the golden feature, up to ``radius``
    positions away, that matches ``test`` best: lowest mean |test - golden| over channels and a 3x3
    neighbourhood (a single position would let any defect pixel find a look-alike). Border replicated;
    ties go to the smaller shift (the unshifted golden is first)."""
    if radius <= 0:
        return golden
    height, width = golden.shape[-2:]
    padded = F.pad(golden, (radius,) * 4, mode="replicate")
    offsets = sorted(((dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)),
                     key=lambda offset: offset[0] ** 2 + offset[1] ** 2)
    shifted = torch.stack([padded[..., radius + dy : radius + dy + height, radius + dx : radius + dx + width]
                           for dy, dx in offsets], dim=1)  # [B, S, C, H, W]
    cost = (shifted - test.unsqueeze(1)).abs().mean(dim=2)  # [B, S, H, W]
    cost = F.avg_pool2d(cost, 3, stride=1, padding=1, count_include_pad=False)
    choice = cost.argmin(dim=1, keepdim=True)  # [B, 1, H, W]
    index = choice.unsqueeze(2).expand(-1, -1, golden.shape[1], -1, -1)
    return shifted.gather(1, index).squeeze(1)


class ChangeNetLite(nn.Module):
    """Siamese golden/test classifier; ``forward`` gives logits [B, 2], ``embed`` the pooled feature."""

    def __init__(self, arch: ModelArch):
        super().__init__()
        self.arch = arch
        widths = arch.widths
        levels = arch.compared_levels
        self.backbone = Backbone(arch.input_channels, widths)
        self.difference = (
            nn.ModuleList(LearnableDifference(widths[level]) for level in levels)
            if arch.difference_module == "learnable"
            else None
        )
        self.projections = nn.ModuleList(nn.Conv2d(widths[level], arch.fuse_width, 1) for level in levels)
        self.head = nn.Sequential(
            nn.Linear(arch.embedding_dim, arch.embed_dec),
            nn.ReLU(inplace=True),
            nn.Linear(arch.embed_dec, 2),
        )
        # Not persistent: they come from the arch, so they never make a warm start fail or differ.
        self.register_buffer("rgb_mean", torch.tensor(arch.rgb_mean), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(arch.rgb_std), persistent=False)

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a [B, L, C, H, W] batch and stack its lights into the image the backbone sees."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        x = (x - self.rgb_mean.view(1, 1, -1, 1, 1)) / self.rgb_std.view(1, 1, -1, 1, 1)
        concat_type = "channels" if self.arch.light_stacking == "channels" else self.arch.concat_type
        return images.stack_lights(x, concat_type, grid=self.arch.grid)

    def difference_maps(self, golden: torch.Tensor, test: torch.Tensor) -> list[torch.Tensor]:
        batch = golden.shape[0]
        # One backbone pass over golden and test together: the same weights, half the kernel launches.
        features = self.backbone(torch.cat([self.stack(golden), self.stack(test)], dim=0))
        maps = []
        for index, level in enumerate(self.arch.compared_levels):
            f_golden, f_test = features[level][:batch], features[level][batch:]
            f_golden = best_shifted(f_golden, f_test, self.arch.tolerance_radius(level))
            if self.difference is None:
                maps.append((f_test - f_golden).abs())
            else:
                maps.append(self.difference[index](f_golden, f_test))
        return maps

    def embed(self, golden: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        """Pooled top-down-fused difference feature [B, embedding_dim] (for cosine k-NN mining)."""
        maps = self.difference_maps(golden, test)
        fused = self.projections[-1](maps[-1])
        for index in range(len(maps) - 2, -1, -1):
            lateral = self.projections[index](maps[index])
            fused = lateral + F.interpolate(fused, size=lateral.shape[-2:], mode="nearest")
        return torch.cat([fused.mean(dim=(2, 3)), fused.amax(dim=(2, 3))], dim=1)

    def forward(self, golden: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(golden, test))


def defect_scores(logits: torch.Tensor) -> torch.Tensor:
    """``siamese_score``: softmax probability of the defect class (index 1), in float32."""
    return logits.float().softmax(dim=1)[:, 1]
