"""Sub-pixel registration of each golden image to its test image (golden misregistration).

Fixture wear and board warp shift the golden a pixel or two against the test; a pixel-aligned
difference then sees every edge of the board as a change. ``estimate_shifts`` measures, per pair, the
translation of the golden against the test by phase correlation over all lights and channels together
(one capture, one shift): a Hann window, the normalised cross-power spectrum, its integer peak within
``max_shift`` pixels, then refined to a fraction of a pixel by Gauss-Newton steps on the squared
difference of the standardised images (Lucas-Kanade; per-plane standardisation makes it insensitive to
gain, as ECC is). ``shift_images`` resamples images by
such shifts (bicubic, border pixels repeated). ``match_blur`` then blurs the sharper image of a
registered pair to the other's focus (a misregistered golden often comes with a defocus of its own).
``align_pairs`` does these for decoded uint8 pairs, in chunks (larger on a GPU), on any device.

Convention: a shift ``(dy, dx)`` means golden(y, x) ~ test(y - dy, x - dx); the aligned golden is the
golden sampled at (y + dy, x + dx).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ALIGN_CHUNK = 256  # pairs per batched FFT on the CPU (and the least on a GPU)
# A GPU chunk fills this much memory: small chunks leave the card waiting on kernel launches.
GPU_CHUNK_BYTES = 4 << 30
BYTES_PER_PLANE_PIXEL = 48  # peak working memory per pair, per plane and pixel: 43 measured (benchmarks/registration_speed.py)
REFINE_ITERATIONS = 4
MARGIN = 3  # border pixels the refinement and the blur match ignore (resampling repeats them)
BLUR_SIGMAS = (0.25, 0.5, 0.75)  # focus differences match_blur can undo, pixels
PRE_SMOOTH = 1.0
BLUR_MARGIN = 0.03


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


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [N, P, H, W] float images, border repeated; ``sigma`` <= 0: unchanged."""
    if sigma <= 0:
        return images
    radius = max(1, int(round(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    batch, planes, height, width = images.shape
    flat = images.reshape(batch * planes, 1, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(batch, planes, height, width)


def match_blur(golden: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(golden, test, signed sigma [N]) with the sharper image of each registered pair blurred to
    the other's focus: the sigma of BLUR_SIGMAS (> 0: the golden blurred, < 0: the test) whose squared
    difference of the pair's mean planes, each blurred by it, standardised and smoothed by PRE_SMOOTH
    (noise would otherwise always favour blurring), is lower than no blur's by more than BLUR_MARGIN;
    else none. The choice is made on one plane per image (a capture has one focus), so it costs a
    fraction of blurring the pair. float32 [N, P, H, W]."""
    golden, test = golden.float().flatten(1, -3), test.float().flatten(1, -3)
    inner = (Ellipsis, slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    planes = golden.mean(dim=1, keepdim=True), test.mean(dim=1, keepdim=True)
    looks = [{sigma: gaussian_blur(_standardised(gaussian_blur(plane, sigma)), PRE_SMOOTH)
              for sigma in (0.0, *BLUR_SIGMAS)} for plane in planes]
    signed = [0.0, *BLUR_SIGMAS, *(-sigma for sigma in BLUR_SIGMAS)]
    costs = torch.stack([(looks[0][max(sigma, 0.0)] - looks[1][max(-sigma, 0.0)])[inner].square().mean(dim=(1, 2, 3))
                         for sigma in signed], dim=1)
    best = costs.argmin(dim=1)
    keep = costs.gather(1, best[:, None])[:, 0] < (1 - BLUR_MARGIN) * costs[:, 0]
    sigmas = torch.tensor(signed, device=best.device)[torch.where(keep, best, torch.zeros_like(best))]
    golden, test = golden.clone(), test.clone()
    for sigma in BLUR_SIGMAS:
        for images, rows in ((golden, sigmas == sigma), (test, sigmas == -sigma)):
            if rows.any():
                images[rows] = gaussian_blur(images[rows], sigma)
    return golden, test, sigmas


def chunk_size(golden: torch.Tensor, device: torch.device) -> int:
    """Pairs per chunk: ``ALIGN_CHUNK`` on the CPU; on a GPU as many as ``GPU_CHUNK_BYTES`` of working
    memory hold (at most half of what is free), never fewer than ``ALIGN_CHUNK``."""
    if device.type != "cuda":
        return ALIGN_CHUNK
    budget = min(GPU_CHUNK_BYTES, torch.cuda.mem_get_info(device)[0] // 2)
    per_pair = BYTES_PER_PLANE_PIXEL * golden[0].numel()
    return max(ALIGN_CHUNK, int(budget // per_pair))


def align_pairs(golden: torch.Tensor, test: torch.Tensor, *, max_shift: float, device: torch.device | None = None,
                blur: bool = False, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(golden registered to test, test, [N, 2] shifts on the CPU) for [N, ..., H, W] pairs, in the
    inputs' dtype and device, computed on ``device`` (default: golden's) in chunks of ``chunk`` pairs
    (default ``chunk_size``). With ``blur`` the sharper image of each registered pair is then blurred
    to match (``match_blur``); otherwise the test is returned as given."""
    device = torch.device(device or golden.device)
    chunk = chunk or chunk_size(golden, device)
    # CPU pairs registered on a GPU travel through page-locked buffers: copies from and to ordinary
    # memory ran at about 2.8 GB/s and were most of the call's time at 128 px (benchmarks/README.md).
    staged = device.type == "cuda" and golden.device.type == "cpu"
    aligned, shifts = torch.empty_like(golden), torch.empty(len(golden), 2)
    matched = torch.empty_like(test) if blur else test
    for start in range(0, len(golden), chunk):
        part_golden = _to_device(golden[start : start + chunk], device, staged)
        part_test = _to_device(test[start : start + chunk], device, staged)
        shift = estimate_shifts(part_golden, part_test, max_shift=max_shift)
        moved = shift_images(part_golden, shift)
        if blur:
            moved, focused, _ = match_blur(moved, part_test)
            _copy_back(matched[start : start + chunk], _in_dtype(focused.reshape(part_test.shape), test.dtype), staged)
        _copy_back(aligned[start : start + chunk], _in_dtype(moved.reshape(part_golden.shape), golden.dtype), staged)
        shifts[start : start + chunk] = shift.cpu()
    return aligned, matched, shifts


def _to_device(part: torch.Tensor, device: torch.device, staged: bool) -> torch.Tensor:
    return part.pin_memory().to(device, non_blocking=True) if staged else part.to(device)


def _copy_back(destination: torch.Tensor, values: torch.Tensor, staged: bool) -> None:
    """``values`` (on the device) into ``destination`` (on the CPU when ``staged``: through a
    page-locked buffer, waited for before it is read)."""
    if not staged:
        destination.copy_(values)
        return
    buffer = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    buffer.copy_(values, non_blocking=True)
    torch.cuda.current_stream(values.device).synchronize()
    destination.copy_(buffer)


def _in_dtype(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``values`` (float) in ``dtype`` (uint8: rounded, clamped), on their own device: the caller copies
    them straight into the result, one host-device copy without a temporary."""
    if dtype == torch.uint8:
        values = values.round().clamp(0, 255)
    return values.to(dtype)
