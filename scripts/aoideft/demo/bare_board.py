"""The bare-board demo world: etched copper (traces, pads, vias, copper pours) on laminate, one light.

A ``Layout`` is one inspected region of a bare board, drawn from its region type (``REGIONS``):
capsule traces, rectangular pads, vias (annular ring and drilled hole) and, for pour regions, a
copper pour with its clearance around the features it surrounds. Defects edit the test board's
copper the way etching does (the six classes of the DeepPCB benchmark): OPEN cuts a trace, SHORT
joins two features, MOUSEBITE bites out of a trace edge, SPUR sticks out of one, PIN_HOLE is a hole
in copper, SPURIOUS_COPPER an island in a clearance. PASS variation is the nuisance of bare-board
AOI: sub-pixel golden/test misregistration, illumination gain, defocus blur, sensor noise, etch
tolerance (every edge a little in or out) and tarnished copper.

Coordinates are pixels of a 64-px crop, origin at the centre, y down; the copper coverage of each
image is evaluated by signed distances on a 2x supersampled grid through that image's camera
(shift and rotation), then shaded and box-filtered down.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import sensor
from .world import ComponentInfo, Gap, RenderedRow, World

PASS_LABEL = "PASS"
LIGHTS = ("UniformLight",)
DEFECT_LABELS = ("OPEN", "SHORT", "MOUSEBITE", "SPUR", "PIN_HOLE", "SPURIOUS_COPPER")
NUISANCE_MODES = ("none", "gain", "blur", "noise", "etch", "tarnish")
SUPERSAMPLE = 2
HALF = 32.0  # half the crop in design units
SOFT = 0.35  # edge softness of the coverage (design px)

# Board finishes (boardname): laminate colour, copper colour, copper texture strength.
FINISHES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "BB_FR4_A": ((0.16, 0.22, 0.13), (0.86, 0.56, 0.36), 0.06),  # bare copper on green FR-4
    "BB_FR4_B": ((0.20, 0.24, 0.16), (0.80, 0.52, 0.34), 0.08),
    "BB_HASL": ((0.14, 0.20, 0.12), (0.78, 0.78, 0.76), 0.10),  # hot-air levelled solder: silvery
    "BB_POLY": ((0.34, 0.28, 0.16), (0.84, 0.58, 0.38), 0.06),  # polyimide: amber laminate
}


# --------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    x0: float
    y0: float
    x1: float
    y1: float
    r: float  # half width


@dataclass(frozen=True)
class Pad:
    cx: float
    cy: float
    hw: float
    hh: float


@dataclass(frozen=True)
class Disk:
    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class Layout:
    region: str
    board: str
    traces: tuple[Trace, ...]
    pads: tuple[Pad, ...] = ()
    rings: tuple[Disk, ...] = ()  # via annular rings (copper)
    drills: tuple[Disk, ...] = ()  # via holes (no copper, dark)
    pour: Pad | None = None  # copper pour area
    clearance: float = 2.5  # pour-to-feature gap
    etch: float = 0.0  # every copper edge moved out (+) or in (-) by this much
    add: tuple[Trace, ...] = ()  # defect copper (capsules; a disk is a zero-length capsule)
    remove: tuple[Trace, ...] = ()  # defect removals
    tarnish: tuple[tuple[float, float, float, float], ...] = ()  # (x, y, radius, darkening)


def _segment_distance(x: np.ndarray, y: np.ndarray, t: Trace) -> np.ndarray:
    dx, dy = t.x1 - t.x0, t.y1 - t.y0
    length2 = dx * dx + dy * dy
    u = np.clip(((x - t.x0) * dx + (y - t.y0) * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return np.hypot(x - (t.x0 + u * dx), y - (t.y0 + u * dy)) - t.r


def _box_distance(x: np.ndarray, y: np.ndarray, p: Pad) -> np.ndarray:
    qx, qy = np.abs(x - p.cx) - p.hw, np.abs(y - p.cy) - p.hh
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def feature_distance(layout: Layout, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance to the union of the designed features (traces, pads, via rings)."""
    distance = np.full(np.shape(x), 1e3, np.float32)
    for trace in layout.traces:
        distance = np.minimum(distance, _segment_distance(x, y, trace))
    for pad in layout.pads:
        distance = np.minimum(distance, _box_distance(x, y, pad))
    for ring in layout.rings:
        distance = np.minimum(distance, np.hypot(x - ring.cx, y - ring.cy) - ring.r)
    return distance


def _cover(distance: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(np.clip(distance / SOFT, -30, 30)))


def copper(layout: Layout, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(copper coverage, drilled-hole coverage) at design coordinates x, y."""
    features = feature_distance(layout, x, y)
    cover = _cover(features - layout.etch)
    if layout.pour is not None:
        pour = _cover(_box_distance(x, y, layout.pour) - layout.etch)
        cover = np.maximum(cover, pour * (1.0 - _cover(features - layout.clearance + layout.etch)))
    for extra in layout.add:
        cover = np.maximum(cover, _cover(_segment_distance(x, y, extra)))
    for cut in layout.remove:
        cover = cover * (1.0 - _cover(_segment_distance(x, y, cut)))
    drilled = np.zeros_like(cover)
    for drill in layout.drills:
        drilled = np.maximum(drilled, _cover(np.hypot(x - drill.cx, y - drill.cy) - drill.r))
    return cover * (1.0 - drilled), drilled


# --------------------------------------------------------------------------------------------------
# Region types
# --------------------------------------------------------------------------------------------------


def _parallel_traces(rng: np.random.Generator, count: int, width: tuple[float, float], gap: tuple[float, float],
                     diagonal: bool) -> tuple[Trace, ...]:
    r = rng.uniform(*width) / 2
    pitch = 2 * r + rng.uniform(*gap)
    offset = rng.uniform(-pitch / 2, pitch / 2)
    traces = []
    for i in range(count):
        c = offset + (i - (count - 1) / 2) * pitch
        if diagonal:  # 45 degrees: offset perpendicular to the run
            traces.append(Trace(-40 + c * 0.707, -40 - c * 0.707, 40 + c * 0.707, 40 - c * 0.707, r))
        else:
            traces.append(Trace(-40, c, 40, c, r))
    return tuple(traces)


def _trace_bundle(rng, board):
    return Layout("TRACE_BUNDLE", board, _parallel_traces(rng, int(rng.integers(3, 5)), (2.8, 4.0), (3.5, 5.5),
                                                          diagonal=rng.random() < 0.3))


def _fine_pitch(rng, board):
    return Layout("FINE_PITCH", board, _parallel_traces(rng, int(rng.integers(5, 8)), (1.8, 2.4), (2.2, 2.8),
                                                        diagonal=rng.random() < 0.3))


def _pad_array(rng, board):
    count = int(rng.integers(3, 6))
    pitch, hw, hh = rng.uniform(9.0, 11.0), rng.uniform(2.6, 3.4), rng.uniform(4.5, 6.0)
    y = rng.uniform(-10, -4)
    pads, traces = [], []
    for i in range(count):
        cx = (i - (count - 1) / 2) * pitch
        pads.append(Pad(cx, y, hw, hh))
        traces.append(Trace(cx, y, cx, y + 40, rng.uniform(1.2, 1.6)))  # fan-out towards the board edge
    return Layout("PAD_ARRAY", board, tuple(traces), tuple(pads))


def _via_field(rng, board):
    """A row of vias, each with its trace leaving on one side, and a trace routed past them on the other."""
    count = int(rng.integers(2, 4))
    side = float(rng.choice([-1, 1]))
    rings, drills, traces = [], [], []
    xs = np.linspace(-16, 16, count) + rng.uniform(-2, 2, count)
    for x in xs:
        y = float(rng.uniform(-3, 3))
        outer = float(rng.uniform(3.2, 4.2))
        rings.append(Disk(float(x), y, outer))
        drills.append(Disk(float(x), y, outer * float(rng.uniform(0.4, 0.5))))
        traces.append(Trace(float(x), y, float(x) + float(rng.uniform(-8, 8)), -side * 40, float(rng.uniform(1.3, 1.8))))
    r = float(rng.uniform(1.3, 1.8))
    past = side * (max(abs(ring.cy) + ring.r for ring in rings) + float(rng.uniform(2.5, 4.0)) + r)
    traces.append(Trace(-40, past, 40, past, r))
    return Layout("VIA_FIELD", board, tuple(traces), rings=tuple(rings), drills=tuple(drills))


def _pour_edge(rng, board):
    trace = Trace(-40, rng.uniform(-4, 4), 40, rng.uniform(-4, 4), rng.uniform(1.4, 2.0))
    edge = float(rng.uniform(8, 14))
    pour = Pad(0.0, -(edge + 40) / 2 if rng.random() < 0.5 else (edge + 40) / 2, 40.0, (40 - edge) / 2 + 20)
    pad = Pad(float(rng.uniform(-14, 14)), trace.y0, 3.0, 3.0)
    return Layout("POUR_EDGE", board, (trace,), (pad,), pour=pour, clearance=float(rng.uniform(2.5, 3.5)))


REGIONS = {
    "TRACE_BUNDLE": (_trace_bundle, ComponentInfo("T", "TRACE_6MIL", 4)),
    "PAD_ARRAY": (_pad_array, ComponentInfo("P", "SMD_PAD_ROW", 5)),
    "VIA_FIELD": (_via_field, ComponentInfo("V", "VIA_0.3MM", 3)),
    "POUR_EDGE": (_pour_edge, ComponentInfo("G", "GND_POUR", 2)),
    "FINE_PITCH": (_fine_pitch, ComponentInfo("F", "TRACE_3MIL_HDI", 7)),
}


# --------------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------------


def _visible_trace_point(layout: Layout, rng: np.random.Generator) -> tuple[Trace, float, float, float, float]:
    """A trace, a point on its centre line inside the crop, and the unit normal there."""
    for _ in range(50):
        trace = layout.traces[int(rng.integers(len(layout.traces)))]
        u = rng.uniform(0.0, 1.0)
        x, y = trace.x0 + u * (trace.x1 - trace.x0), trace.y0 + u * (trace.y1 - trace.y0)
        inside = max(abs(x), abs(y)) < HALF - 8
        clear_of_pads = all(abs(x - p.cx) > p.hw + 2 or abs(y - p.cy) > p.hh + 2 for p in layout.pads)
        clear_of_rings = all(math.hypot(x - r.cx, y - r.cy) > r.r + 2.5 for r in layout.rings)
        if inside and clear_of_pads and clear_of_rings:
            length = math.hypot(trace.x1 - trace.x0, trace.y1 - trace.y0)
            return trace, x, y, -(trace.y1 - trace.y0) / length, (trace.x1 - trace.x0) / length
    raise ValueError(f"no trace point inside the crop in a {layout.region} layout")


def _open(layout, severity, rng):
    trace, x, y, nx, ny = _visible_trace_point(layout, rng)
    gap = 2.5 + 2.5 * severity  # along the trace
    half = trace.r + 1.0  # across the whole trace width
    cut = Trace(x - nx * half, y - ny * half, x + nx * half, y + ny * half, gap / 2)
    return replace(layout, remove=layout.remove + (cut,)), {"gap_px": gap}


def _spur(layout, severity, rng):
    trace, x, y, nx, ny = _visible_trace_point(layout, rng)
    side = float(rng.choice([-1, 1]))
    length = 2.5 + 2.5 * severity
    width = 1.2 + 0.8 * severity
    base = trace.r - 0.3
    spur = Trace(x + side * nx * base, y + side * ny * base, x + side * nx * (trace.r + length),
                 y + side * ny * (trace.r + length), width / 2 + 0.2)
    return replace(layout, add=layout.add + (spur,)), {"length_px": length}


def _mousebite(layout, severity, rng):
    trace, x, y, nx, ny = _visible_trace_point(layout, rng)
    side = float(rng.choice([-1, 1]))
    bites = int(1 + round(2 * severity))
    radius = min(1.3 + 1.0 * severity, trace.r * 0.95)
    centres = [(x + side * nx * trace.r + ny * k * 2.2 * radius, y + side * ny * trace.r - nx * k * 2.2 * radius)
               for k in range(bites)]  # side by side along the edge
    cuts = tuple(Trace(cx, cy, cx, cy, radius) for cx, cy in centres)
    return replace(layout, remove=layout.remove + cuts), {"bites": bites, "radius_px": radius}


def _pin_hole(layout, severity, rng):
    radius = 1.2 + 1.0 * severity
    candidates = [(p.cx + rng.uniform(-0.5, 0.5) * p.hw, p.cy + rng.uniform(-0.5, 0.5) * p.hh) for p in layout.pads
                  if max(abs(p.cx), abs(p.cy)) < HALF - 6]
    if not candidates or rng.random() < 0.5:
        trace, x, y, _, _ = _visible_trace_point(layout, rng)
        radius = min(radius, trace.r * 0.8)
        candidates = [(x, y)]
    x, y = candidates[int(rng.integers(len(candidates)))]
    return replace(layout, remove=layout.remove + (Trace(x, y, x, y, radius),)), {"radius_px": radius}


def _spurious_copper(layout, severity, rng):
    radius = 1.8 + 1.6 * severity
    for _ in range(200):
        x, y = rng.uniform(-HALF + 6, HALF - 6, size=2)
        clear = feature_distance(layout, np.float32(x), np.float32(y))
        in_pour = layout.pour is not None and _box_distance(np.float32(x), np.float32(y), layout.pour) < layout.clearance
        if clear > radius + 1.5 and not in_pour:
            stretch = rng.uniform(0, 1.2 * radius)
            angle = rng.uniform(0, math.pi)
            island = Trace(x - stretch * math.cos(angle) / 2, y - stretch * math.sin(angle) / 2,
                           x + stretch * math.cos(angle) / 2, y + stretch * math.sin(angle) / 2, radius)
            return replace(layout, add=layout.add + (island,)), {"radius_px": radius}
    raise ValueError(f"no clearance for spurious copper in a {layout.region} layout")


def _short(layout, severity, rng):
    width = 2.0 + 1.6 * severity
    for _ in range(100):
        trace, x, y, nx, ny = _visible_trace_point(layout, rng)
        side = float(rng.choice([-1, 1]))
        # walk along the normal until the copper of another feature (or the pour) starts
        for step in np.arange(trace.r + 0.5, 16.0, 0.25):
            px, py = x + side * nx * step, y + side * ny * step
            own = _segment_distance(np.float32(px), np.float32(py), trace)
            others = replace(layout, traces=tuple(t for t in layout.traces if t is not trace))
            if own > 0.5 and (feature_distance(others, np.float32(px), np.float32(py)) < 0
                              or (layout.pour is not None and _box_distance(np.float32(px), np.float32(py), layout.pour) < 0)):
                bridge = Trace(x + side * nx * (trace.r - 0.4), y + side * ny * (trace.r - 0.4), px, py, width / 2)
                return replace(layout, add=layout.add + (bridge,)), {"width_px": width, "span_px": float(step - trace.r)}
    raise ValueError(f"no neighbouring feature to short in a {layout.region} layout")


DEFECTS = {"OPEN": _open, "SHORT": _short, "MOUSEBITE": _mousebite, "SPUR": _spur, "PIN_HOLE": _pin_hole,
           "SPURIOUS_COPPER": _spurious_copper}


def apply_defect(layout: Layout, label: str, severity: float, rng: np.random.Generator) -> tuple[Layout, dict]:
    if label not in DEFECTS:
        raise ValueError(f"unknown bare-board defect {label!r}; expected one of {', '.join(DEFECT_LABELS)}")
    layout, params = DEFECTS[label](layout, float(np.clip(severity, 0.0, 1.0)), rng)
    return layout, {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items()}


# --------------------------------------------------------------------------------------------------
# Nuisance, rendering
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One image's camera (shift in output px, rotation) and sensor settings."""

    shift_x: float = 0.0
    shift_y: float = 0.0
    rotation_deg: float = 0.0
    gain: float = 1.0
    noise_sigma: float = 1.0
    blur_sigma: float = 0.0
    jpeg_quality: int = 92


def draw_views(mode: str, rng: np.random.Generator, misregistration_px: float = 0.0,
               golden_rng: np.random.Generator | None = None) -> tuple[View, View, float, tuple]:
    """(golden view, test view, test etch offset, tarnish patches) of a row whose strong nuisance is
    ``mode``; the golden's misregistration, gain and blur come from ``golden_rng``, so every other
    draw matches the aligned variant's."""
    if mode not in NUISANCE_MODES:
        raise ValueError(f"unknown bare-board nuisance {mode!r}; expected one of {', '.join(NUISANCE_MODES)}")
    radius, theta = rng.uniform(0.0, 0.5), rng.uniform(0, 2 * math.pi)
    test = View(radius * math.cos(theta), radius * math.sin(theta), float(rng.uniform(-0.2, 0.2)),
                gain=float(rng.uniform(0.97, 1.03)), noise_sigma=float(rng.uniform(1.0, 2.0)), jpeg_quality=90)
    etch = float(rng.uniform(-0.08, 0.08))
    tarnish: tuple = ()
    if mode == "gain":
        test = replace(test, gain=float(rng.uniform(0.85, 1.15)))
    elif mode == "blur":
        test = replace(test, blur_sigma=float(rng.uniform(0.4, 0.7)))
    elif mode == "noise":
        test = replace(test, noise_sigma=float(rng.uniform(4.0, 8.0)))
    elif mode == "etch":
        etch = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.3))
    elif mode == "tarnish":
        tarnish = tuple((float(rng.uniform(-24, 24)), float(rng.uniform(-24, 24)), float(rng.uniform(8, 16)),
                         float(rng.uniform(0.25, 0.4))) for _ in range(int(rng.integers(1, 3))))
    golden = View(noise_sigma=float(rng.uniform(0.8, 1.5)))
    if misregistration_px > 0:
        golden_rng = golden_rng or rng
        radius, theta = golden_rng.uniform(0.0, misregistration_px), golden_rng.uniform(0, 2 * math.pi)
        golden = replace(golden, shift_x=radius * math.cos(theta), shift_y=radius * math.sin(theta),
                         gain=float(golden_rng.uniform(0.95, 1.05)), blur_sigma=float(golden_rng.uniform(0.2, 0.7)))
    return golden, test, etch, tarnish


def _grid(size: int, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Design coordinates of the supersampled pixel centres seen through ``view``."""
    n = size * SUPERSAMPLE
    scale = 2 * HALF / n
    u = (np.arange(n, dtype=np.float32) + 0.5) * scale - HALF
    px, py = np.meshgrid(u, u)
    px, py = px - view.shift_x * 64.0 / size, py - view.shift_y * 64.0 / size
    angle = math.radians(view.rotation_deg)
    c, s = math.cos(angle), math.sin(angle)
    return (c * px + s * py).astype(np.float32), (-s * px + c * py).astype(np.float32)


def render_image(layout: Layout, view: View, size: int, texture: np.ndarray) -> np.ndarray:
    """Linear RGB [size, size, 3] (0..255) of one board region through one view."""
    x, y = _grid(size, view)
    cover, drilled = copper(layout, x, y)
    laminate, metal, grain = FINISHES[layout.board]
    n = size * SUPERSAMPLE
    weave = 1.0 + 0.06 * np.sin(x * 1.3) * np.sin(y * 1.3) + 0.04 * texture[:n, :n]
    shade = 1.0 + grain * texture[n:2 * n, :n]
    # etched copper edges slope and look darker; a tarnished area dims the copper
    edge = 1.0 - 0.9 * cover * (1.0 - cover)
    for tx, ty, radius, depth in layout.tarnish:
        shade = shade * (1.0 - depth * np.exp(-((x - tx) ** 2 + (y - ty) ** 2) / (2 * radius * radius)))
    image = np.empty((n, n, 3), np.float32)
    for c in range(3):
        image[..., c] = (laminate[c] * weave * (1 - cover) * (1 - 0.8 * drilled) + metal[c] * shade * edge * cover) * 255
    return image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))


def render(plan: Any, config: Any, rng: np.random.Generator, golden_rng: np.random.Generator) -> RenderedRow:
    build, _ = REGIONS[plan.comp_type]
    layout = build(rng, plan.board)
    golden_view, test_view, etch, tarnish = draw_views(plan.nuisance, rng, config.misregistration_px, golden_rng)
    test_layout = replace(layout, etch=etch, tarnish=tarnish)
    severity, params = None, {}
    if plan.label != PASS_LABEL:
        severity = float(rng.uniform(0.0, 1.0))
        test_layout, params = apply_defect(test_layout, plan.label, severity, rng)
    n = config.image_size * SUPERSAMPLE
    texture = rng.standard_normal((2 * n, n)).astype(np.float32)  # the same board: shared by golden and test
    images = []
    for lay, view in ((layout, golden_view), (test_layout, test_view)):
        linear = render_image(lay, view, config.image_size, texture)[None]
        pixels = sensor.capture(linear, (view.gain,), (1.0,), view.noise_sigma, rng, blur_sigma=view.blur_sigma)
        images.append({LIGHTS[0]: pixels[0]})
    truth = {
        "severity": "" if severity is None else round(severity, 4),
        "defect_params": json.dumps(params, sort_keys=True) if params else "",
        "misregistration_px": round(math.hypot(test_view.shift_x - golden_view.shift_x,
                                               test_view.shift_y - golden_view.shift_y), 4),
        "gain": round(test_view.gain, 4),
        "blur_sigma": round(test_view.blur_sigma, 4),
        "noise_sigma": round(test_view.noise_sigma, 4),
        "etch_px": round(etch, 4),
        "tarnish_patches": len(tarnish),
    }
    return RenderedRow(images[0], images[1], golden_view.jpeg_quality, test_view.jpeg_quality, truth)


GAPS = (
    Gap("label", "SPURIOUS_COPPER", 0.2, "copper islands from a new etch line's resist defects; the base set predates it"),
    Gap("label", "MOUSEBITE", 0.15, "mouse bites appear with a worn etchant nozzle; none in the base set"),
    Gap("comp_type_1", "FINE_PITCH", 0.2, "a new HDI design with 3-mil traces, introduced after the base set"),
    Gap("nuisance", "tarnish", 0.2, "boards stored longer before inspection: tarnished (darker) copper"),
)
BASE_SHARES: dict[str, dict[str, float]] = {
    "label": {"OPEN": 1.0, "SHORT": 1.0, "SPUR": 1.0, "PIN_HOLE": 1.0},
    "comp_type_1": {"TRACE_BUNDLE": 0.3, "PAD_ARRAY": 0.25, "VIA_FIELD": 0.25, "POUR_EDGE": 0.2},
    "nuisance": {"none": 0.35, "gain": 0.2, "blur": 0.15, "noise": 0.15, "etch": 0.15},
}
NUISANCE_DESCRIPTIONS = {
    "none": "only the mild variation every row has (<= 0.5 px misregistration, gain 0.97-1.03)",
    "gain": "illumination gain 0.85-1.15",
    "blur": "defocus blur sigma 0.4-0.7 px",
    "noise": "sensor noise sigma 4-8 grey levels",
    "etch": "etch tolerance: every copper edge 0.15-0.3 px in or out",
    "tarnish": "one or two tarnished copper areas (25-40% darker, 8-16 px across)",
}
DEFECTS_MARKDOWN = """\
Edits of the test board's copper, each with a severity in 0..1 (0: the smallest the demo calls a
defect; 1: gross; px of a 64-px crop): OPEN (a 2.5-5 px cut across a trace), SHORT (a 2-3.6 px wide
copper bridge to the neighbouring feature or pour), MOUSEBITE (1-3 bites of radius 1.3-2.3 px out of a
trace edge), SPUR (a 2.5-5 px protrusion, 1.2-2 px wide), PIN_HOLE (a hole of radius 1.2-2.2 px in a
trace or pad), SPURIOUS_COPPER (an island of radius 1.8-3.4 px in a clearance)."""

WORLD = World(
    kind="bare_board",
    title="bare PCB copper (traces, pads, vias, pours)",
    light_order=LIGHTS,
    default_lights=1,
    components={name: info for name, (_, info) in REGIONS.items()},
    boards=tuple(FINISHES),
    gaps=GAPS,
    base_shares=BASE_SHARES,
    nuisance_descriptions=NUISANCE_DESCRIPTIONS,
    defects_markdown=DEFECTS_MARKDOWN,
    compatible=lambda label, region: True,  # every region has traces and a neighbour to short to
    render=render,
)
