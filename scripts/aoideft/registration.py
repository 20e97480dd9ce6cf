"""Sub-pixel registration of each golden image to its test image (golden misregistration).

Fixture wear and board warp shift the golden a pixel or two against the test; a pixel-aligned
difference then sees every edge of the board as a change. ``estimate_shifts`` measures, per pair, the
translation of the golden against the test by phase correlation over all lights and channels together
(one capture, one shift): a Hann window, the normalised cross-power spectrum, its integer peak within
``max_shift`` pixels, then refined to a fraction of a pixel by Gauss-Newton steps on the squared
difference of the standardised images (Lucas-Kanade; per-plane standardisation makes it insensitive to
gain, as ECC is). ``shift_images`` resamples images by
such shifts (bicubic, border pixels repeated). ``align_pairs`` does both for decoded uint8 pairs, in
chunks, on any device.

Convention: a shift ``(dy, dx)`` means golden(y, x) ~ test(y - dy, x - dx); the aligned golden is the
golden sampled at (y + dy, x + dx).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ALIGN_CHUNK = 256  # pairs per batched FFT
REFINE_ITERATIONS = 4
MARGIN = 3  # border pixels the refinement ignores (resampling repeats them)


def _hann(size: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(size, periodic=False, device=device, dtype=torch.float32)


def cross_power(golden: torch.Tensor, test: torch.Tensor) -> torch.Tensor:
    """Normalised cross-power spectrum [N, H, W] (complex) of [N, ..., H, W] golden/test images, the
    planes of a pair (lights, channels) summed before normalising."""
    height, width = golden.shape[-2:]
    window = _hann(height, golden.device)[:, None] * _hann(width, golden.device)[None, :]

    def spectrum(x: torch.Tensor) -> torch.Tensor:
        x = x.float().flatten(1, -3)  # [N, P, H, W]
        x = (x - x.mean(dim=(-2, -1), keepdim=True)) * window
        return torch.fft.fft2(x)

    product = (spectrum(golden) * spectrum(test).conj()).sum(dim=1)
    return product / product.abs().clamp_min(1e-6)


def _integer_peak(spectrum: torch.Tensor, max_shift: int) -> torch.Tensor:
    """[N, 2] integer (dy, dx) of the correlation peak with |dy|, |dx| <= max_shift."""
    batch, height, width = spectrum.shape
    surface = torch.fft.ifft2(spectrum).real
    reach_y, reach_x = min(max_shift, height // 2 - 1), min(max_shift, width // 2 - 1)
    dy = torch.arange(-reach_y, reach_y + 1, device=spectrum.device)
    dx = torch.arange(-reach_x, reach_x + 1, device=spectrum.device)
    window = surface[:, dy % height][:, :, dx % width]  # [N, 2ry+1, 2rx+1]
    best = window.flatten(1).argmax(dim=1)
    return torch.stack([dy[best // len(dx)], dx[best % len(dx)]], dim=1).float()


def _standardised(x: torch.Tensor) -> torch.Tensor:
    """[N, P, H, W] float planes with zero mean and unit variance each (gain and offset drop out)."""
    x = x.float().flatten(1, -3)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    return x / x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)


def _refine(golden: torch.Tensor, test: torch.Tensor, shifts: torch.Tensor, iterations: int) -> torch.Tensor:
    """Gauss-Newton (Lucas-Kanade) steps on the sum of squared differences between the standardised
    test and the shifted standardised golden, a ``MARGIN``-pixel border left out; each step at most one
    pixel. Phase correlation's peak is only as fine as its grid; this brings it to ~0.01 px."""
    golden, test = _standardised(golden), _standardised(test)
    mask = torch.zeros_like(test[:1, :1])
    mask[..., MARGIN:-MARGIN, MARGIN:-MARGIN] = 1.0
    for _ in range(iterations):
        moved = shift_images(golden, shifts)
        grad_y, grad_x = torch.gradient(moved, dim=(-2, -1))
        error = (test - moved) * mask
        yy, xx, yx = [(a * b * mask).sum(dim=(1, 2, 3)) for a, b in ((grad_y, grad_y), (grad_x, grad_x), (grad_y, grad_x))]
        by, bx = (grad_y * error).sum(dim=(1, 2, 3)), (grad_x * error).sum(dim=(1, 2, 3))
        determinant = (yy * xx - yx * yx).clamp_min(1e-6)
        step = torch.stack([(xx * by - yx * bx) / determinant, (yy * bx - yx * by) / determinant], dim=1)
        shifts = shifts + step.clamp(-1.0, 1.0)
    return shifts


def estimate_shifts(golden: torch.Tensor, test: torch.Tensor, *, max_shift: float,
                    iterations: int = REFINE_ITERATIONS) -> torch.Tensor:
    """float32 [N, 2] (dy, dx) per pair of [N, ..., H, W] images (any dtype, any device); see the
    module docstring for the sign. |dy|, |dx| stay within ``max_shift``."""
    if golden.shape != test.shape:
        raise ValueError(f"golden {tuple(golden.shape)} and test {tuple(test.shape)} differ in shape")
    if len(golden) == 0:
        return torch.zeros(0, 2, device=golden.device)
    spectrum = cross_power(golden, test)
    coarse = _integer_peak(spectrum, max(0, int(math.ceil(max_shift))))
    return _refine(golden, test, coarse, iterations).clamp(-max_shift, max_shift)


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """``images`` [N, ..., H, W] sampled at (y + dy, x + dx) per pair (bicubic, border repeated);
    float32 out, values clamped to the input's range for uint8 input (0..255)."""
    batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    flat = images.float().reshape(batch, -1, height, width)
    theta = torch.zeros(batch, 2, 3, device=images.device)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    # affine_grid works in [-1, 1] units: one pixel is 2 / size (align_corners=False)
    theta[:, 0, 2] = shifts[:, 1].to(images.device) * 2.0 / width
    theta[:, 1, 2] = shifts[:, 0].to(images.device) * 2.0 / height
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode="bicubic", padding_mode="border", align_corners=False)
    if images.dtype == torch.uint8:
        out = out.clamp(0, 255)
    return out.reshape(images.shape)


def align_pairs(golden: torch.Tensor, test: torch.Tensor, *, max_shift: float, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(golden registered to test, in golden's dtype and device; [N, 2] shifts on the CPU) for
    [N, ..., H, W] pairs, computed in chunks of ``ALIGN_CHUNK`` on ``device`` (default: golden's)."""
    device = device or golden.device
    aligned, shifts = torch.empty_like(golden), torch.empty(len(golden), 2)
    for start in range(0, len(golden), ALIGN_CHUNK):
        part_golden = golden[start : start + ALIGN_CHUNK].to(device)
        part_test = test[start : start + ALIGN_CHUNK].to(device)
        shift = estimate_shifts(part_golden, part_test, max_shift=max_shift)
        moved = shift_images(part_golden, shift)
        if golden.dtype == torch.uint8:
            moved = moved.round_()
        aligned[start : start + ALIGN_CHUNK] = moved.to(golden.dtype).to(golden.device)
        shifts[start : start + ALIGN_CHUNK] = shift.cpu()
    return aligned, shifts
