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
    aligned, same_test, found = registration.align_pairs(golden8, test8, max_shift=4)
    assert same_test is test8  # without blur matching the test is not touched
    assert aligned.dtype == torch.uint8 and aligned.shape == golden8.shape and found.device.type == "cpu"
    assert torch.allclose(found, shifts, atol=0.08)
    inner = (Ellipsis, slice(6, -6), slice(6, -6))
    before = (golden8.float() - test8.float())[inner].abs().mean()
    after = (aligned.float() - test8.float())[inner].abs().mean()
    assert after < 0.25 * before
    empty, _, none = registration.align_pairs(golden8[:0], test8[:0], max_shift=4, blur=True)
    assert empty.shape[0] == 0 and none.shape == (0, 2)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        registration.estimate_shifts(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9), max_shift=1)


def test_the_trainer_registers_by_default_within_a_quarter_of_small_images(tmp_path):
    from aoideft import spec_settings, trainer
    from test_trainer import make_spec

    data = {"train": tmp_path / "t.csv", "val": tmp_path / "v.csv", "images_dir": tmp_path}
    for size, reach in ((32, 4.0), (8, 2.0)):
        settings = spec_settings.train_settings(make_spec(data, size=size))
        arch = trainer.arch_from_settings(settings, trainer.TrainOptions())
        assert (arch.align, arch.align_max_shift_px, arch.shift_tolerance_px) == ("phase_blur", reach, 0.0)
    settings = spec_settings.train_settings(make_spec(data))
    old = trainer.arch_from_settings(settings, trainer.TrainOptions(align="none", align_max_shift_px=3.0))
    assert (old.align, old.align_max_shift_px) == ("none", 3.0)


def test_blur_matching_blurs_the_sharper_image_only_when_focus_differs():
    scene = _scenes(3, size=64, seed=4)
    def noise(seed):
        return 2.0 * torch.randn(scene.shape, generator=torch.Generator().manual_seed(seed))

    defocused = registration.gaussian_blur(scene, 0.6)
    golden = torch.cat([defocused[:1], scene[1:2], scene[2:]]) + noise(1)  # golden blurrier / test blurrier / same
    test = torch.cat([scene[:1], defocused[1:2], scene[2:]]) + noise(2)
    matched_golden, matched_test, sigmas = registration.match_blur(golden, test)
    assert sigmas[0] < 0 and sigmas[1] > 0 and sigmas[2] == 0, sigmas  # < 0: the test was blurred
    assert abs(float(sigmas[0]) + 0.6) <= 0.25 and abs(float(sigmas[1]) - 0.6) <= 0.25
    inner = (Ellipsis, slice(4, -4), slice(4, -4))
    before = (golden - test)[inner].abs().mean(dim=(1, 2, 3))
    after = (matched_golden - matched_test)[inner].abs().mean(dim=(1, 2, 3))
    assert bool((after[:2] < 0.8 * before[:2]).all()) and torch.equal(matched_golden[2], golden[2])
    assert torch.equal(matched_golden[0], golden[0]) and torch.equal(matched_test[1], test[1])  # only one side moves


def test_chunking_does_not_change_the_result():
    shifts = torch.tensor([[1.5, 0.5], [-1.0, -1.25], [0.0, 2.0]])
    golden, test = _views(shifts)
    golden8 = golden.round().clamp(0, 255).to(torch.uint8)[:, :, None]
    test8 = test.round().clamp(0, 255).to(torch.uint8)[:, :, None]
    assert registration.chunk_size(golden8, torch.device("cpu")) == registration.ALIGN_CHUNK
    one_by_one = registration.align_pairs(golden8, test8, max_shift=4, blur=True, chunk=1)
    together = registration.align_pairs(golden8, test8, max_shift=4, blur=True)
    for single, batched in zip(one_by_one, together):
        assert torch.equal(single, batched)
