"""The GPU-only code paths (skipped without CUDA: CI has no GPU; run on the device machine, see
benchmarks/README.md): they must compute what the plain paths compute, only faster."""

from __future__ import annotations

import pytest
import torch

from aoideft import registration
from aoideft.augment import augment_pairs
from aoideft.spec_settings import AugmentationSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


def _pairs(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [count, 2, 3, size, size] CPU pairs: smooth boards, the test a shifted copy with noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 6, size // 8, size // 8, generator=generator)
    board = 255 * torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    shifts = 3 * torch.rand(count, 2, generator=generator) - 1.5
    test = registration.shift_images(board, shifts) + 4 * torch.randn(board.shape, generator=generator)

    def as_uint8(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, 255).round().to(torch.uint8).reshape(count, 2, 3, size, size)

    return as_uint8(board), as_uint8(test)


def test_registering_cpu_pairs_on_the_gpu_gives_what_pairs_already_there_give():
    # CPU pairs travel through page-locked buffers in chunks; the result must be the one of the same
    # arithmetic on pairs that start on the GPU, back on the CPU in the inputs' dtype.
    golden, test = _pairs(700, 64)
    staged = registration.align_pairs(golden, test, max_shift=4.0, device=CUDA, blur=True, chunk=256)
    resident = registration.align_pairs(golden.to(CUDA), test.to(CUDA), max_shift=4.0, blur=True, chunk=256)
    assert all(part.device.type == "cpu" for part in staged)
    assert staged[0].dtype == torch.uint8 and staged[1].dtype == torch.uint8
    assert torch.equal(staged[0], resident[0].cpu()) and torch.equal(staged[1], resident[1].cpu())
    assert torch.allclose(staged[2], resident[2].cpu())
    assert not torch.equal(staged[0], golden)  # something was registered


def test_batches_augmented_together_on_the_gpu_match_one_by_one():
    settings = AugmentationSettings(augment=True, hflip_probability=0.5, vflip_probability=0.5, rotate_probability=0.5,
                                    color_probability=0.5, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.2,
                                    scale_range=(0.7, 1.0))
    golden, test = (x.to(CUDA).float().div_(255) for x in _pairs(96, 32, seed=1))
    sizes = [32, 32, 32]
    together = augment_pairs(golden.clone(), test.clone(), settings, torch.Generator().manual_seed(3), sizes)
    generator, parts = torch.Generator().manual_seed(3), []
    for start in range(0, 96, 32):
        parts.append(augment_pairs(golden[start : start + 32].clone(), test[start : start + 32].clone(), settings,
                                   generator))
    for index in (0, 1):
        assert torch.allclose(together[index], torch.cat([part[index] for part in parts]), atol=1e-6)
