"""The renderer of demo scenes (``scene.py``): golden and test images of one board location per AOI light.

``render_pair`` rasterises a golden and a test scene of one board location at ``SUPERSAMPLE`` x the
output size with soft edges (the shared board once for both cameras), builds per-pixel albedo,
specularity and height, shades them per light and box-filters down (anti-aliasing):

- UniformLight: diffuse dome, flat grey (albedo only);
- SolderLight: coaxial + ring specular: flat metal and solder slopes light up, the rest stays dark;
- LowAngleLight: grazing ring + one directional source: slopes and edges bright, cast shadows;
- WhiteLight: colour image, mild top-light shading and specular highlights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .scene import (
    LIGHTS,
    METAL,
    PAD,
    REFERENCE_SIZE,
    RGB,
    SILK,
    SOLDER,
    SUPERSAMPLE,
    VIA_HOLE,
    Blob,
    Board,
    Box,
    Camera,
    Footprint,
    Mark,
    Material,
    Scene,
    Terminal,
    bounds_of,
)

_LUMA = (0.30, 0.59, 0.11)


# --------------------------------------------------------------------------------------------------
# Rasterisation
# --------------------------------------------------------------------------------------------------


def _unit(x):
    """Clamp to [0, 1] (np.clip's Python wrapper costs more than the work on small windows)."""
    return np.minimum(np.maximum(x, 0.0), 1.0)


def _box_coverage(u, v, hw: float, hh: float, soft: float) -> np.ndarray:
    """Soft-edged coverage of an axis-aligned box centred at (0, 0) in local coordinates (u, v):
    a one-``soft``-wide ramp across each edge."""
    k = 1.0 / soft
    return _unit(np.minimum(hw * k + 0.5 - np.abs(u) * k, hh * k + 0.5 - np.abs(v) * k))


def _ellipse_coverage(u, v, rx: float, ry: float, soft: float) -> np.ndarray:
    r = np.sqrt((u * (1 / rx)) ** 2 + (v * (1 / ry)) ** 2)
    k = min(rx, ry) / soft
    return _unit(k + 0.5 - r * k)


def _coverage(u, v, boxes: Sequence[Box], disk: bool, soft: float) -> np.ndarray:
    """Coverage of unrotated boxes (or ellipses) given in the frame of (u, v)."""
    shape = _ellipse_coverage if disk else _box_coverage
    cover = None
    for b in boxes:
        c = shape(u - b.cx, v - b.cy, b.hw, b.hh, soft)
        cover = c if cover is None else np.maximum(cover, c)
    return cover


def _outside_distance(u: np.ndarray, v: np.ndarray, hw: float, hh: float) -> np.ndarray:
    """Euclidean distance from the box (0 inside)."""
    return np.hypot(np.maximum(np.abs(u) - hw, 0), np.maximum(np.abs(v) - hh, 0))


def _local(x: np.ndarray, y: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = x - box.cx, y - box.cy
    if not box.angle:
        return dx, dy
    c, s = math.cos(math.radians(box.angle)), math.sin(math.radians(box.angle))
    return dx * c + dy * s, -dx * s + dy * c


def _value_noise(x: np.ndarray, y: np.ndarray, grid: np.ndarray, cell: float) -> np.ndarray:
    """Bilinear interpolation of a random grid (``cell`` scene units per step) centred on the origin."""
    rows, cols = grid.shape
    fx = np.clip(x * (1.0 / cell) + (cols - 1) / 2, 0, cols - 1.001)
    fy = np.clip(y * (1.0 / cell) + (rows - 1) / 2, 0, rows - 1.001)
    ix, iy = fx.astype(np.int32), fy.astype(np.int32)
    tx, ty = fx - ix, fy - iy
    index = iy * cols + ix
    flat = grid.ravel()
    top = flat.take(index) * (1 - tx) + flat.take(index + 1) * tx
    bottom = flat.take(index + cols) * (1 - tx) + flat.take(index + cols + 1) * tx
    return top * (1 - ty) + bottom * ty


_RED, _GREEN, _BLUE, _SPEC, _HEIGHT = range(5)  # planes of Canvas.surf


class Canvas:
    """Supersampled surfaces of one or more images of the same board location (one per camera):
    ``surf[plane, k, row, col]``, planes albedo r, g, b, specularity, height; ``x``, ``y`` = design-frame
    coordinates of each pixel. Primitives are drawn in windows (``window``) around them."""

    def __init__(self, image_size: int, cameras: Sequence[Camera], orientation: int):
        n = image_size * SUPERSAMPLE
        self.n = n
        self.unit = REFERENCE_SIZE / n  # scene units per supersampled pixel
        self.soft = self.unit
        self.cameras = tuple(cameras)
        self.turns = orientation % 4
        self.scale = REFERENCE_SIZE / image_size
        t = ((np.arange(n, dtype=np.float32) + 0.5) * self.unit - REFERENCE_SIZE / 2).astype(np.float32)
        gx, gy = np.meshgrid(t, t)
        # Per camera: cos, sin of its rotation and its shift in scene units.
        self._poses = [(math.cos(math.radians(cam.rotation_deg)), math.sin(math.radians(cam.rotation_deg)),
                        cam.shift_x * self.scale, cam.shift_y * self.scale) for cam in self.cameras]
        xs, ys = [], []
        for c, s, shift_x, shift_y in self._poses:
            bx = c * gx - s * gy + shift_x
            by = s * gx + c * gy + shift_y
            x, y = ((bx, by), (by, -bx), (-bx, -by), (-by, bx))[self.turns]  # board -> footprint frame
            xs.append(x)
            ys.append(y)
        self.x, self.y = np.stack(xs), np.stack(ys)
        self.surf = np.zeros((5, len(self.cameras), n, n), np.float32)

    def image(self, index: int) -> Canvas:
        """A view of one image (shares the arrays)."""
        view = object.__new__(Canvas)
        view.__dict__.update(self.__dict__)
        view.cameras = self.cameras[index : index + 1]
        view._poses = self._poses[index : index + 1]
        view.x, view.y = self.x[index : index + 1], self.y[index : index + 1]
        view.surf = self.surf[:, index : index + 1]
        return view

    def window(self, cx: float, cy: float, radius: float) -> tuple[slice, slice, slice] | None:
        """Index of the pixels that can hold design points within ``radius`` of (cx, cy), over all
        cameras; None when off-image."""
        bx, by = ((cx, cy), (-cy, cx), (-cx, -cy), (cy, -cx))[self.turns]  # footprint -> board frame
        r = radius + 2 * self.unit
        lo_x = lo_y = math.inf
        hi_x = hi_y = -math.inf
        for c, s, shift_x, shift_y in self._poses:
            ox, oy = bx - shift_x, by - shift_y
            gx, gy = c * ox + s * oy, -s * ox + c * oy
            lo_x, hi_x = min(lo_x, gx - r), max(hi_x, gx + r)
            lo_y, hi_y = min(lo_y, gy - r), max(hi_y, gy + r)
        def to_px(value: float) -> float:
            return (value + REFERENCE_SIZE / 2) / self.unit

        c0, c1 = max(int(to_px(lo_x)), 0), min(int(math.ceil(to_px(hi_x))), self.n)
        r0, r1 = max(int(to_px(lo_y)), 0), min(int(math.ceil(to_px(hi_y))), self.n)
        if c0 >= c1 or r0 >= r1:
            return None
        return slice(None), slice(r0, r1), slice(c0, c1)

    def paint(self, win, alpha: np.ndarray, colour: RGB, spec: float | None = None,
              height: float | np.ndarray | None = None, add_height: np.ndarray | None = None) -> None:
        """Blend a layer with coverage ``alpha`` into the window: colour, specularity, height
        (``add_height``: relief added as is, already weighted by the caller's coverage)."""
        values = [*colour]
        if spec is not None:
            values.append(spec)
            if height is not None and not isinstance(height, np.ndarray):
                values.append(height)
                height = None
        planes = self.surf[(slice(0, len(values)), *win)]
        planes += (np.asarray(values, np.float32).reshape(-1, 1, 1, 1) - planes) * alpha
        if height is not None:
            relief = self.surf[(_HEIGHT, *win)]
            relief += (height - relief) * alpha
        if add_height is not None:
            self.surf[(_HEIGHT, *win)] += add_height

    def mark(self, mark: Mark, material: Material, height: float | None = None) -> None:
        """A mark in the design frame (silkscreen, pads, traces)."""
        bounds = bounds_of(mark.boxes)
        win = self.window(bounds.cx, bounds.cy, bounds.radius)
        if win is not None:
            alpha = _coverage(self.x[win], self.y[win], mark.boxes, mark.disk, self.soft)
            self.paint(win, alpha, mark.colour, material.spec, height)

    def box(self, box: Box, material: Material, height: float | None = None, disk: bool = False) -> None:
        self.mark(Mark((box,), material.colour, disk), material, height)


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------


def _draw_board(canvas: Canvas, board: Board, footprint: Footprint) -> None:
    # Texture is sampled once per output pixel (box filtering would average finer samples anyway).
    x, y = canvas.x[:, ::SUPERSAMPLE, ::SUPERSAMPLE], canvas.y[:, ::SUPERSAMPLE, ::SUPERSAMPLE]
    period, phase_x, phase_y = board.weave
    k = 2 * math.pi / period
    weave = np.sin(x * k + phase_x) * np.sin(y * k + phase_y)
    grain = _value_noise(x, y, board.grain, 1.3)
    shade = 1 + 0.07 * _value_noise(x, y, board.thickness, 11.0) + 0.05 * grain + 0.04 * weave
    def upsample(a: np.ndarray) -> np.ndarray:
        return a.repeat(SUPERSAMPLE, 1).repeat(SUPERSAMPLE, 2)

    shade = upsample(shade)
    for plane, value in zip((_RED, _GREEN, _BLUE), board.mask):
        np.multiply(shade, value, out=canvas.surf[plane])
    canvas.surf[_SPEC] = 0.12
    canvas.surf[_HEIGHT] = upsample(0.10 * weave + 0.06 * grain)
    copper = Material(tuple(min(1.0, c * 1.45 + 0.03) for c in board.mask), 0.18)  # traces under the mask
    if board.traces:
        canvas.mark(Mark(board.traces, copper.colour), copper, height=0.35)
    for vx, vy, r in board.vias:
        canvas.box(Box(vx, vy, r, r), PAD, height=0.35, disk=True)
        canvas.box(Box(vx, vy, r * 0.45, r * 0.45), VIA_HOLE, height=-0.5, disk=True)
    for silk in footprint.silk:
        canvas.mark(Mark(silk.boxes, SILK.colour, silk.disk), SILK, height=0.25)
    for pads in (footprint.pads, board.neighbour_pads):
        if pads:
            canvas.mark(Mark(pads, PAD.colour), PAD, height=0.3)
    for pad in board.neighbour_pads:
        _draw_dome(canvas, pad, 1.0)
    if board.neighbour_body is not None:
        canvas.box(board.neighbour_body, Material(board.neighbour_colour, 0.05), height=4.0)


def _draw_dome(canvas: Canvas, pad: Box, amount: float) -> None:
    """Reflowed solder on a pad with nothing to wet: a flat dome over the pad."""
    if amount <= 0.02:
        return
    win = canvas.window(pad.cx, pad.cy, pad.radius)
    if win is None:
        return
    u, v = _local(canvas.x[win], canvas.y[win], pad)
    inside = np.minimum(pad.hw - np.abs(u), pad.hh - np.abs(v))
    profile = _unit(inside * (1 / 2.2)) ** 0.6
    dome_height = 0.3 + 1.2 * min(amount, 2.5)
    alpha = _unit(inside * (1 / canvas.soft) + 0.5) * min(1.0, 0.5 + amount)
    canvas.paint(win, alpha, SOLDER.colour, SOLDER.spec, 0.3 + dome_height * profile)


def _component_frame(canvas: Canvas, scene: Scene, win) -> tuple[np.ndarray, np.ndarray]:
    """Design-frame pixels -> component frame (placement shift/rotation, 180-degree flip)."""
    x, y = canvas.x[win] - scene.dx, canvas.y[win] - scene.dy
    c, s = math.cos(math.radians(scene.angle)), math.sin(math.radians(scene.angle))
    u, v = x * c + y * s, y * c - x * s
    return (-u, -v) if scene.flipped else (u, v)


def _wetting_terminals(scene: Scene) -> dict[int, list[Terminal]]:
    """Terminals that wet each pad (none for a missing part or a lifted tombstone end)."""
    wetting: dict[int, list[Terminal]] = {}
    if not scene.present:
        return wetting
    for index, terminal in enumerate(scene.part.terminals):
        if scene.lift_deg > 0 and index == scene.lift_terminal:
            continue
        wetting.setdefault(terminal.pad, []).append(terminal)
    return wetting


def _draw_solder(canvas: Canvas, scene: Scene) -> None:
    wetting = _wetting_terminals(scene)
    for pad_index, pad in enumerate(scene.footprint.pads):
        amount = scene.solder[pad_index]
        terminals = wetting.get(pad_index)
        if not terminals:
            _draw_dome(canvas, pad, amount)
            continue
        spill = 1.6 * max(amount - 1.0, 0.0)  # excess solder runs over the pad edge
        win = canvas.window(pad.cx, pad.cy, pad.radius + spill)
        if win is None:
            continue
        pu, pv = _local(canvas.x[win], canvas.y[win], pad)
        region = _box_coverage(pu, pv, pad.hw + spill, pad.hh + spill, canvas.soft + spill * 0.5)
        u, v = _component_frame(canvas, scene, win)
        height = None
        for terminal in terminals:
            c = terminal.contact
            distance = _outside_distance(u - c.cx, v - c.cy, c.hw, c.hh)
            length = terminal.fillet * (0.3 + 0.7 * min(amount, 2.2))
            top = terminal.wet_height * min(0.25 + 0.6 * amount, 1.5)
            exponent = 1.5 / (amount + 0.25)  # concave when lean, bulging when excessive
            fillet = top * np.maximum(1 - distance * (1 / length), 0.0) ** exponent
            height = fillet if height is None else np.maximum(height, fillet)
        alpha = region * np.minimum(height * 4.0, 1.0)
        canvas.paint(win, alpha, SOLDER.colour, SOLDER.spec, 0.3 + height)
    for bridge in scene.bridges:
        win = canvas.window(bridge.cx, bridge.cy, bridge.radius)
        if win is None:
            continue
        u, v = _local(canvas.x[win], canvas.y[win], bridge)
        across = np.sqrt(np.maximum(1 - (v * (1 / bridge.hh)) ** 2, 0.0))
        alpha = _box_coverage(u, v, bridge.hw, bridge.hh, canvas.soft)
        canvas.paint(win, alpha, SOLDER.colour, SOLDER.spec, 0.3 + 1.6 * bridge.hh * across)


def _lift(scene: Scene, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tombstone geometry seen from above: the body is foreshortened towards the anchored end.

    Returns the body-frame u of each pixel, the height the lift adds there, and the mask of the
    lifted end face (the terminal's end face turned towards the camera)."""
    body = scene.part.body
    alpha = math.radians(scene.lift_deg)
    side = 1.0 if scene.part.terminals[scene.lift_terminal].contact.cx > 0 else -1.0
    anchor = -side * body.hw
    along = (u - anchor) * side  # distance from the anchored end towards the lifted end
    cos_a = max(math.cos(alpha), 0.05)
    body_u = anchor + side * (np.maximum(along, 0.0) / cos_a + np.minimum(along, 0.0))
    rise = np.maximum(along, 0.0) * math.tan(min(alpha, math.radians(85)))
    rise = np.minimum(rise, 2 * body.hw * math.sin(alpha))
    projected = 2 * body.hw * cos_a
    face = (along > projected) & (along < projected + scene.part.height * math.sin(alpha))
    return body_u, rise, face


@dataclass
class _Frame:
    """Component-frame coordinates of one window of the canvas."""

    win: tuple[slice, slice, slice]
    u: np.ndarray
    v: np.ndarray
    body_u: np.ndarray  # u on the (possibly tombstoned) body
    rise: np.ndarray | float  # height added by a tombstone lift


class _PartFrames:
    """Windows around the part's primitives (the whole part once when tombstoned, since the lift
    moves geometry along the body)."""

    def __init__(self, canvas: Canvas, scene: Scene):
        self.canvas, self.scene = canvas, scene
        self.lifted = scene.lift_deg > 0
        self.face: np.ndarray | None = None
        self._whole: _Frame | None = None
        if self.lifted:
            part = scene.part
            win = canvas.window(scene.dx, scene.dy, part.radius + 2 * part.height + 2)
            if win is not None:
                u, v = _component_frame(canvas, scene, win)
                body_u, rise, self.face = _lift(scene, u)
                self._whole = _Frame(win, u, v, body_u, rise)

    def around(self, box: Box, margin: float = 0.0) -> _Frame | None:
        if self.lifted:
            return self._whole
        scene = self.scene
        cx, cy = (-box.cx, -box.cy) if scene.flipped else (box.cx, box.cy)
        c, s = math.cos(math.radians(scene.angle)), math.sin(math.radians(scene.angle))
        win = self.canvas.window(scene.dx + c * cx - s * cy, scene.dy + s * cx + c * cy, box.radius + margin)
        if win is None:
            return None
        u, v = _component_frame(self.canvas, scene, win)
        return _Frame(win, u, v, u, 0.0)


def _draw_part(canvas: Canvas, scene: Scene) -> None:
    part = scene.part
    frames = _PartFrames(canvas, scene)
    soft = canvas.soft

    def profile(frame: _Frame, box: Box, top: float) -> np.ndarray | float:
        if not part.cylinder:
            return top
        return top * np.sqrt(np.maximum(1 - ((frame.v - box.cy) * (1 / (box.hh * 1.05))) ** 2, 0.04))

    def paint(boxes: tuple[Box, ...], colour: RGB, spec: float, top: float | None, disk: bool = False):
        bounds = bounds_of(boxes)
        frame = frames.around(bounds)
        if frame is not None:
            cover = _coverage(frame.body_u, frame.v, boxes, disk, soft)
            canvas.paint(frame.win, cover, colour, spec, None if top is None else profile(frame, bounds, top) + frame.rise)

    leads = tuple(t.lead for t in part.terminals if t.lead is not None)
    if leads and (frame := frames.around(bounds_of(leads))) is not None:
        # Gull-wing leads (all alike): slope down from mid-body height, then the flat foot.
        first = part.terminals[0]
        slope_len = 2 * (first.lead.hh - first.contact.hh)
        outward = _unit((np.abs(frame.v) - (abs(first.lead.cy) - first.lead.hh)) * (1 / slope_len))
        knee = part.height * 0.45
        cover = _coverage(frame.u, frame.v, leads, False, soft)
        canvas.paint(frame.win, cover, METAL.colour, METAL.spec, knee + (first.height - knee) * outward)
    for terminal in part.terminals:
        if terminal.lead is None and not terminal.over_body:
            paint((terminal.contact,), METAL.colour, METAL.spec, terminal.height)
    paint((part.body,), part.colour, 0.08, part.height)
    for mark in part.marks:
        colour = mark.colour
        if mark.polarity:
            colour = tuple(b + (m - b) * scene.mark_strength for b, m in zip(part.colour, mark.colour))
        paint(mark.boxes, colour, 0.05, part.height + mark.height if mark.height else None, disk=mark.disk)
    for terminal in part.terminals:
        if terminal.over_body:
            paint((terminal.contact,), METAL.colour, METAL.spec, terminal.height)
    if frames.face is not None:  # the lifted end face, turned towards the camera
        frame, body = frames.around(part.body), part.body
        cover = frames.face * _box_coverage(0.0, frame.v - body.cy, 1.0, body.hh, soft)
        canvas.paint(frame.win, cover, METAL.colour, METAL.spec, 2 * body.hw * math.sin(math.radians(scene.lift_deg)))
    # Excess solder climbs over the contacts.
    for index, terminal in enumerate(part.terminals):
        amount = scene.solder[terminal.pad]
        if amount <= 1.3 or (frames.lifted and index == scene.lift_terminal):
            continue
        c = terminal.contact
        frame = frames.around(c, margin=c.radius * 0.3)
        if frame is None:
            continue
        cover = min(1.0, (amount - 1.3) / 0.7)
        du, dv = (frame.u - c.cx) * (1 / (c.hw * 1.25)), (frame.v - c.cy) * (1 / (c.hh * 1.15))
        inside = 1 - du * du - dv * dv
        alpha = _unit(inside * (min(c.hw, c.hh) / soft) + 0.5) * cover
        bulge = np.sqrt(np.maximum(inside, 0.0))
        canvas.paint(frame.win, alpha, SOLDER.colour, SOLDER.spec,
                     terminal.height * profile(frame, c, 1.0) + 1.2 * cover * bulge)


def _draw_blobs(canvas: Canvas, blobs: Sequence[Blob]) -> None:
    for blob in blobs:
        box = blob.box
        win = canvas.window(box.cx, box.cy, box.radius + blob.soft)
        if win is None:
            continue
        u, v = _local(canvas.x[win], canvas.y[win], box)
        soft = max(canvas.soft, blob.soft)
        cover = (_ellipse_coverage(u, v, box.hw, box.hh, soft) if blob.round
                 else _box_coverage(u, v, box.hw, box.hh, soft))
        canvas.paint(win, cover * blob.alpha, blob.colour, blob.spec, add_height=blob.height * cover)


def _draw_scene(canvas: Canvas, scene: Scene) -> None:
    """Everything of a scene above the bare board."""
    _draw_solder(canvas, scene)
    if scene.present:
        _draw_part(canvas, scene)
    _draw_blobs(canvas, scene.blobs)


# --------------------------------------------------------------------------------------------------
# Lights
# --------------------------------------------------------------------------------------------------

LIGHT_TINT: dict[str, RGB] = {  # the monochrome lights' colour cast
    "LowAngleLight": (0.80, 0.90, 1.00),
    "SolderLight": (1.00, 0.95, 0.86),
    "UniformLight": (0.97, 0.98, 1.00),
}
_LOW_ANGLE_DIRECTION = (-0.7071, -0.7071)  # towards the directional source (top-left)
_SHADOW_SLOPE = 0.45  # tan of the directional source's elevation


def _cast_shadow(height: np.ndarray, unit: float) -> np.ndarray:
    """1 where something between the pixel and the top-left low source is tall enough to block it."""
    shadow = np.zeros_like(height)
    for step in (2, 4, 7, 11):
        blocker = height.copy()
        blocker[:, step:, step:] = height[:, :-step, :-step]
        distance = step * unit * math.sqrt(2)
        shadow = np.maximum(shadow, _unit((blocker - height - distance * _SHADOW_SLOPE) * (1 / 0.6)))
    return shadow


def shade(light: str, canvas: Canvas) -> np.ndarray:
    """The supersampled images [C, k, H, W] of a rasterised canvas under ``light`` (0..255): C = 3
    (r, g, b) for WhiteLight, C = 1 (to be tinted with ``LIGHT_TINT``) for the others."""
    surf = canvas.surf
    height, spec = surf[_HEIGHT], surf[_SPEC]
    gy, gx = np.gradient(height, canvas.unit, axis=(1, 2))
    slope2 = gx * gx + gy * gy
    flat = 1.0 / (1.0 + slope2 * 25.0)  # coaxial reflection from flat surfaces
    if light == "WhiteLight":
        diffuse = (0.72 + 0.28 / np.sqrt(1.0 + slope2)) * (1 - 0.35 * spec) * 255.0
        highlight = (0.45 * spec * flat + 0.02) * 255.0
        return np.stack([surf[plane] * diffuse + highlight for plane in (_RED, _GREEN, _BLUE)])
    lum = _LUMA[0] * surf[_RED] + _LUMA[1] * surf[_GREEN] + _LUMA[2] * surf[_BLUE]
    if light == "UniformLight":
        value = 0.93 * lum + 0.03
    elif light == "SolderLight":
        slope = np.sqrt(slope2)
        ring = np.exp(-((slope - 0.8) * (1 / 0.45)) ** 2)
        value = 0.22 * lum + spec * (0.78 * flat + 0.55 * ring) + 0.02
    elif light == "LowAngleLight":
        slope = np.sqrt(slope2)
        edge = slope / (slope + 0.9)
        lx, ly = _LOW_ANGLE_DIRECTION
        facing = np.maximum(0.12 - (gx * lx + gy * ly) * 0.6, 0.0) / np.sqrt(1.0 + slope2)
        shadow = _cast_shadow(height, canvas.unit)
        value = (0.10 * lum + (0.35 + 0.45 * lum + 0.25 * spec) * edge + 0.45 * facing) * (1 - 0.55 * shadow) + 0.02
    else:
        raise ValueError(f"unknown light {light!r}; expected one of {', '.join(LIGHTS)}")
    return (255.0 * value)[None]


def downsample(image: np.ndarray) -> np.ndarray:
    """Box-filter supersampled images [..., H, W] to the output size (anti-aliasing)."""
    total = image[..., 0::2, 0::2] + image[..., 1::2, 0::2]
    total += image[..., 0::2, 1::2]
    total += image[..., 1::2, 1::2]
    return total * 0.25


def render_pair(golden: Scene, test: Scene, cameras: tuple[Camera, Camera], image_size: int,
                lights: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Golden and test images of one board location: {light: float32 [size, size, 3], 0..255} each.

    The two scenes must share the board and footprint (one location on two boards); the board is
    rasterised once for both cameras."""
    if golden.board is not test.board or golden.footprint is not test.footprint or golden.orientation != test.orientation:
        raise ValueError("golden and test scenes must share the board, footprint and orientation")
    canvas = Canvas(image_size, cameras, golden.orientation)
    _draw_board(canvas, golden.board, golden.footprint)
    for index, scene in enumerate((golden, test)):
        _draw_scene(canvas.image(index), scene)
    pair: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
    for light in lights:
        images = np.moveaxis(downsample(shade(light, canvas)), 0, -1)  # [k, size, size, C]
        if images.shape[-1] == 1:
            images = images * np.asarray(LIGHT_TINT[light], np.float32)
        for index in range(2):
            pair[index][light] = images[index]
    return pair
