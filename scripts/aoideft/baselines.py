"""Reference scorers to judge the trained model against (benchmarks only, never in the pipeline)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def template_diff_scores(golden: torch.Tensor, test: torch.Tensor, blur: int = 5) -> torch.Tensor:
    """The classic golden-template AOI check: blur |test - golden| and take the maximum.

    ``golden``/``test``: uint8 or float [N, L, C, H, W]. Returns one score per pair in [0, 1]; a
    box blur of ``blur`` pixels suppresses single-pixel noise, as line AOI software does.
    """
    diff = (test.float() - golden.float()).abs().mean(dim=2)  # [N, L, H, W], mean over colour
    if test.dtype == torch.uint8:
        diff = diff / 255.0
    n, lights, height, width = diff.shape
    blurred = F.avg_pool2d(diff.reshape(n * lights, 1, height, width), blur, stride=1, padding=blur // 2,
                           count_include_pad=False)
    return blurred.reshape(n, -1).amax(dim=1)
