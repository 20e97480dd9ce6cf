"""Golden-to-test registration: phase correlation + sub-pixel refinement, and the shift applied."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aoideft import registration

torch.set_num_threads(1)


def _scenes(batch: int, planes: int = 2, size: int = 96, seed: int = 0) -> torch.Tensor:
    """Smooth random board-like texture (blurred noise), float in [0, 255]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, planes, size, size, generator=generator)
    return 255 * F.avg_pool2d(noise, 3, stride=1, padding=1)


def _views(shifts: torch.Tensor, *, gain: float = 1.0, noise: float = 0.0, seed: int = 0):
    """(golden, test) 64x64 crops of one scene per row, golden(y, x) = test(y - dy, x - dx)."""
    scene = _scenes(len(shifts), seed=seed)
    test = scene[..., 16:80, 16:80] + noise * torch.randn(scene[..., 16:80, 16:80].shape,
                                                          generator=torch.Generator().manual_seed(seed + 1))
    golden = gain * registration.shift_images(scene, -shifts)[..., 16:80, 16:80]
    return golden, test


def test_sub_pixel_shifts_are_recovered_despite_gain_and_noise():
    shifts = torch.tensor([[1.3, -0.7], [0.0, 0.0], [-2.0, 1.6], [0.4, 0.25], [2.9, -3.1]])
    golden, test = _views(shifts, gain=1.07, noise=3.0)
    found = registration.estimate_shifts(golden, test, max_shift=4)
    assert torch.allclose(found, shifts, atol=0.05), found
    # the sign convention: the golden sampled at (y + dy, x + dx) is the test
    aligned = registration.shift_images(golden / 1.07, found)
    inner = (Ellipsis, slice(6, -6), slice(6, -6))
    assert (aligned - test)[inner].abs().mean() < 0.25 * (golden / 1.07 - test)[inner].abs().mean(dim=(1, 2, 3)).max()


def test_search_stays_within_max_shift():
    shifts = torch.tensor([[3.0, 0.0]])
    golden, test = _views(shifts)
    found = registration.estimate_shifts(golden, test, max_shift=1.5)
    assert float(found.abs().max()) <= 1.5
    assert torch.allclose(registration.estimate_shifts(golden, test, max_shift=4), shifts, atol=0.05)


def test_align_pairs_registers_uint8_five_dimensional_pairs_in_chunks(monkeypatch):
    monkeypatch.setattr(registration, "ALIGN_CHUNK", 2)
    shifts = torch.tensor([[1.5, 0.5], [-1.0, -1.25], [0.0, 2.0]])
    golden, test = _views(shifts)
    # [N, L, C, H, W] uint8, as decode_pairs gives them: 2 lights x 1 channel
    golden8 = golden.round().clamp(0, 255).to(torch.uint8)[:, :, None]
    test8 = test.round().clamp(0, 255).to(torch.uint8)[:, :, None]
    aligned, found = registration.align_pairs(golden8, test8, max_shift=4)
    assert aligned.dtype == torch.uint8 and aligned.shape == golden8.shape and found.device.type == "cpu"
    assert torch.allclose(found, shifts, atol=0.08)
    inner = (Ellipsis, slice(6, -6), slice(6, -6))
    before = (golden8.float() - test8.float())[inner].abs().mean()
    after = (aligned.float() - test8.float())[inner].abs().mean()
    assert after < 0.25 * before
    empty, none = registration.align_pairs(golden8[:0], test8[:0], max_shift=4)
    assert empty.shape[0] == 0 and none.shape == (0, 2)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        registration.estimate_shifts(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), max_shift=1)
