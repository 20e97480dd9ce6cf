"""A parametric PCB component scene and its renderer, one image per AOI light.

A ``Scene`` is the physical state of one inspected location: the board (solder mask with texture,
traces, vias, silkscreen, copper pads, a neighbouring part), the placed component (body, end caps or
gull-wing leads, marking, polarity mark) and its solder (fillets per terminal, bridges), plus loose
material on top (dust, flux, scratches, stains). Defects and nuisances (``defects``) change these
parameters, so every light renders them consistently.

Geometry is in pixels of a 64-px crop (``REFERENCE_SIZE``) in the footprint ("design") frame: x along
the part's terminal axis, y down, origin at the footprint centre; heights use the same unit.
``render.render_pair`` draws a golden and a test scene of one board location, once per light.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

RGB = tuple[float, float, float]
LIGHTS = ("LowAngleLight", "SolderLight", "UniformLight", "WhiteLight")
REFERENCE_SIZE = 64.0  # scene units: pixels of a 64-px crop; scaled to the requested image size
SUPERSAMPLE = 2


# --------------------------------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """Rectangle: centre, half width (x), half height (y), rotation in degrees."""

    cx: float
    cy: float
    hw: float
    hh: float
    angle: float = 0.0

    @property
    def radius(self) -> float:
        return math.hypot(self.hw, self.hh)


def bounds_of(boxes: Sequence[Box]) -> Box:
    """Axis-aligned box around unrotated boxes."""
    x0, x1 = min(b.cx - b.hw for b in boxes), max(b.cx + b.hw for b in boxes)
    y0, y1 = min(b.cy - b.hh for b in boxes), max(b.cy + b.hh for b in boxes)
    return Box((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)


@dataclass(frozen=True)
class Material:
    colour: RGB
    spec: float  # 0 = matte, 1 = mirror-like (solder)


SILK = Material((0.93, 0.93, 0.89), 0.05)
PAD = Material((0.72, 0.69, 0.62), 0.45)  # solder-coated pad: duller than a fillet
SOLDER = Material((0.86, 0.86, 0.88), 1.0)
METAL = Material((0.80, 0.80, 0.79), 0.8)  # tin-plated end caps and leads
VIA_HOLE = Material((0.04, 0.04, 0.04), 0.0)


@dataclass(frozen=True)
class Terminal:
    """One electrical contact of a part, in the component frame."""

    contact: Box  # end cap, folded tab or lead foot: where solder wets
    pad: int  # index into Footprint.pads
    height: float  # top of the contact
    wet_height: float  # how high a nominal fillet climbs
    fillet: float  # nominal fillet length from the contact outwards
    over_body: bool  # drawn over the body ends (chip end caps) or beside it (tabs, leads)
    lead: Box | None = None  # gull-wing lead from the body edge to the foot's outer end


@dataclass(frozen=True)
class Mark:
    """Ink or a feature on a surface (part marking, polarity band, silkscreen): one or more boxes."""

    boxes: tuple[Box, ...]
    colour: RGB
    disk: bool = False
    polarity: bool = False  # part of the polarity marking (its contrast follows Scene.mark_strength)
    height: float = 0.0  # relief relative to the surface (a dimple is < 0)


@dataclass(frozen=True)
class Part:
    """The component body, terminals and marking in the component frame (centred, unrotated)."""

    body: Box
    height: float
    colour: RGB
    cylinder: bool  # MELF: round cross-section
    terminals: tuple[Terminal, ...]
    marks: tuple[Mark, ...]

    @property
    def radius(self) -> float:
        boxes = [self.body] + [t.lead or t.contact for t in self.terminals]
        return max(math.hypot(abs(b.cx) + b.hw, abs(b.cy) + b.hh) for b in boxes)


@dataclass(frozen=True)
class Footprint:
    """Board side of a component: pads and silkscreen in the design frame."""

    pads: tuple[Box, ...]
    silk: tuple[Mark, ...]
    bridge_pairs: tuple[tuple[int, int], ...]  # adjacent pads a solder bridge can join


@dataclass(frozen=True)
class ComponentType:
    name: str  # comp_type_1
    part_type: str
    designator: str  # comp_name prefix
    pins: int
    polar: bool
    two_terminal: bool
    build: Callable[[float], tuple[Footprint, Part]]  # scale -> geometry


@dataclass(frozen=True)
class Blob:
    """Loose material or surface damage: an ellipse (or box) painted on top of everything."""

    box: Box
    colour: RGB
    alpha: float
    spec: float | None = None  # None keeps the specularity underneath
    height: float = 0.0  # added relief
    round: bool = True
    soft: float = 1.0  # edge softness in scene units (stains are soft, dust sharp)


@dataclass(frozen=True)
class Board:
    name: str
    mask: RGB  # solder-mask colour
    thickness: np.ndarray = field(compare=False, repr=False)  # low-frequency mask variation grid
    grain: np.ndarray = field(compare=False, repr=False)  # fine texture grid
    weave: tuple[float, float, float] = (4.0, 0.0, 0.0)  # glass-weave period and phases
    traces: tuple[Box, ...] = ()
    vias: tuple[tuple[float, float, float], ...] = ()  # (x, y, outer radius)
    neighbour_pads: tuple[Box, ...] = ()  # pads of a neighbouring part
    neighbour_body: Box | None = None
    neighbour_colour: RGB = (0.1, 0.1, 0.1)


@dataclass(frozen=True)
class Scene:
    comp: ComponentType
    footprint: Footprint
    part: Part
    board: Board
    orientation: int  # quarter turns of the footprint in the crop
    solder: tuple[float, ...]  # solder amount per pad; 1 = nominal fillet
    dx: float = 0.0  # placement of the part relative to its footprint
    dy: float = 0.0
    angle: float = 0.0
    present: bool = True
    flipped: bool = False  # rotated 180 degrees (polarity)
    mark_strength: float = 1.0  # contrast of the part's polarity marking
    lift_deg: float = 0.0  # tombstone: the lifted terminal's end rises by this angle
    lift_terminal: int = 1
    bridges: tuple[Box, ...] = ()  # solder bridges in the design frame
    blobs: tuple[Blob, ...] = ()


@dataclass(frozen=True)
class Camera:
    """How an image was taken: board shift in output pixels and rotation (misregistration)."""

    shift_x: float = 0.0
    shift_y: float = 0.0
    rotation_deg: float = 0.0


# --------------------------------------------------------------------------------------------------
# Component catalogue
# --------------------------------------------------------------------------------------------------

_BLACK_BODY: RGB = (0.09, 0.09, 0.10)
_INK: RGB = (0.78, 0.78, 0.76)


def _mirror_pair(box: Box) -> tuple[Box, Box]:
    return Box(-box.cx, box.cy, box.hw, box.hh), box


def _scaled(s: float, cx: float, cy: float, hw: float, hh: float) -> Box:
    return Box(s * cx, s * cy, s * hw, s * hh)


def _text(s: float, cx: float, cy: float, glyphs: int, pitch: float, hw: float, hh: float) -> Mark:
    start = cx - pitch * (glyphs - 1) / 2
    return Mark(tuple(_scaled(s, start + i * pitch, cy, hw, hh) for i in range(glyphs)), _INK)


def _silk_lines(s: float, half_length: float, offset: float, vertical: bool) -> Mark:
    """Two silkscreen outline strokes beside the part (along x, or along y when ``vertical``)."""
    boxes = [Box(0, side * s * offset, s * half_length, 0.45) for side in (-1, 1)]
    if vertical:
        boxes = [Box(b.cy, b.cx, b.hh, b.hw) for b in boxes]
    return Mark(tuple(boxes), SILK.colour)


def _two_terminal(s: float, *, body: tuple[float, float], height: float, colour: RGB, cap: float,
                  cap_height: float, pad: tuple[float, float, float], fillet: float, over_body: bool,
                  cylinder: bool, marks: tuple[Mark, ...], silk: tuple[Mark, ...]) -> tuple[Footprint, Part]:
    """Chip/MELF/tantalum geometry: body along x, one terminal and pad at each end."""
    pad_cx, pad_hw, pad_hh = (s * v for v in pad)
    body_hw, body_hh = s * body[0], s * body[1]
    if over_body:  # end caps cover the body ends
        cap_box = Box(body_hw - s * cap, 0.0, s * cap, body_hh * 1.02)
    else:  # folded tabs stick out of the body ends
        cap_box = Box(body_hw + s * cap * 0.5, 0.0, s * cap, body_hh * 0.62)
    terminals = tuple(Terminal(c, i, s * cap_height, s * cap_height * 0.8, s * fillet, over_body)
                      for i, c in enumerate(_mirror_pair(cap_box)))
    pads = _mirror_pair(Box(pad_cx, 0.0, pad_hw, pad_hh))
    part = Part(Box(0, 0, body_hw, body_hh), s * height, colour, cylinder, terminals, marks)
    return Footprint(pads, silk, ()), part


def _chip_res(s: float) -> tuple[Footprint, Part]:
    return _two_terminal(s, body=(11.0, 5.5), height=3.5, colour=_BLACK_BODY, cap=2.4, cap_height=3.7,
                         pad=(12.5, 5.0, 7.0), fillet=6.0, over_body=True, cylinder=False,
                         marks=(_text(s, 0, 0, 3, 4.0, 1.2, 2.3),), silk=(_silk_lines(s, 9.0, 9.5, False),))


def _chip_cap(s: float) -> tuple[Footprint, Part]:
    return _two_terminal(s, body=(11.0, 6.0), height=6.0, colour=(0.70, 0.58, 0.40), cap=2.7, cap_height=6.2,
                         pad=(12.5, 5.0, 7.5), fillet=6.5, over_body=True, cylinder=False, marks=(),
                         silk=(_silk_lines(s, 9.0, 10.0, False),))


def _tant_cap(s: float) -> tuple[Footprint, Part]:
    plus = Mark((_scaled(s, 23.5, -10.5, 1.8, 0.5), _scaled(s, 23.5, -10.5, 0.5, 1.8)), SILK.colour)  # anode (+x)
    stripe = Mark((_scaled(s, 9.0, 0, 2.2, 7.5),), (0.42, 0.26, 0.08), polarity=True)
    return _two_terminal(s, body=(13.0, 7.5), height=7.0, colour=(0.84, 0.68, 0.20), cap=1.8, cap_height=2.2,
                         pad=(14.5, 5.0, 6.0), fillet=5.0, over_body=False, cylinder=False,
                         marks=(stripe,), silk=(_silk_lines(s, 11.0, 10.0, False), plus))


def _melf(s: float) -> tuple[Footprint, Part]:
    band = Mark((_scaled(s, -5.6, 0, 1.9, 5.0),), (0.10, 0.10, 0.11), polarity=True)  # cathode (-x)
    bar = Mark((Box(-s * 19.5, 0, 0.7, s * 6.5),), SILK.colour)
    return _two_terminal(s, body=(12.0, 5.0), height=7.0, colour=(0.78, 0.36, 0.32), cap=2.4, cap_height=7.2,
                         pad=(12.5, 4.5, 6.0), fillet=5.5, over_body=True, cylinder=True,
                         marks=(band,), silk=(_silk_lines(s, 8.0, 8.0, False), bar))


def _gull_wing(s: float, *, body: tuple[float, float], height: float, pins: Sequence[tuple[float, int]],
               marks: tuple[Mark, ...], silk: tuple[Mark, ...],
               bridge_pairs: tuple[tuple[int, int], ...]) -> tuple[Footprint, Part]:
    """Leaded package: body centred, leads leaving its top (-y) and bottom (+y) edges."""
    body_hh = s * body[1]
    slope_len, foot_len, lead_hw = s * 3.4, s * 1.5, s * 1.25
    terminals, pads = [], []
    for index, (x, side) in enumerate(pins):
        x *= s
        foot = Box(x, side * (body_hh + slope_len + foot_len - 0.4), lead_hw, foot_len)
        outer = abs(foot.cy) + foot.hh
        lead = Box(x, side * (body_hh + outer) / 2, lead_hw, (outer - body_hh) / 2)
        terminals.append(Terminal(foot, index, s * 0.9, s * 2.4, s * 3.0, False, lead))
        pads.append(Box(x, side * (body_hh + slope_len + foot_len + 0.2 * s), s * 1.9, s * 3.4))
    part = Part(Box(0, 0, s * body[0], body_hh), s * height, _BLACK_BODY, False, tuple(terminals), marks)
    return Footprint(tuple(pads), silk, bridge_pairs), part


def _sot23(s: float) -> tuple[Footprint, Part]:
    return _gull_wing(s, body=(9.5, 5.5), height=4.5, pins=((-6.5, 1), (6.5, 1), (0.0, -1)),
                      marks=(_text(s, 0, 0, 2, 4.0, 1.1, 2.0),), silk=(_silk_lines(s, 3.5, 12.5, True),),
                      bridge_pairs=((0, 1),))


def _soic8(s: float) -> tuple[Footprint, Part]:
    xs = (-9.0, -3.0, 3.0, 9.0)
    pins = tuple((x, 1) for x in xs) + tuple((x, -1) for x in reversed(xs))  # pin 1 bottom-left
    dot = Mark((_scaled(s, -8.8, 4.0, 1.9, 1.9),), (0.42, 0.42, 0.44), disk=True, polarity=True, height=-0.5 * s)
    bevel = Mark((_scaled(s, 0, 7.2, 12.5, 0.8),), (0.24, 0.24, 0.26), polarity=True)  # pin-1 side chamfer
    silk = (_silk_lines(s, 5.5, 14.8, True), Mark((Box(-s * 14.8, s * 12.5, 1.0, 1.0),), SILK.colour, disk=True))
    return _gull_wing(s, body=(12.5, 8.0), height=6.0, pins=pins, marks=(dot, bevel, _text(s, 1.5, -1.5, 4, 3.6, 1.0, 1.8)),
                      silk=silk, bridge_pairs=((0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)))


COMPONENT_TYPES: dict[str, ComponentType] = {
    t.name: t
    for t in (
        ComponentType("CHIP_RES", "RES_0603_10K", "R", 2, False, True, _chip_res),
        ComponentType("CHIP_CAP", "CAP_0603_100N", "C", 2, False, True, _chip_cap),
        ComponentType("SOT23", "SOT23_BC847", "Q", 3, False, False, _sot23),
        ComponentType("SOIC8", "SOIC8_LM358", "U", 8, True, False, _soic8),
        ComponentType("MELF", "MINIMELF_LL4148", "D", 2, True, True, _melf),
        ComponentType("TANT_CAP", "TANT_A_10U", "C", 2, True, True, _tant_cap),
    )
}

BOARD_STYLES: dict[str, RGB] = {  # boardname -> solder-mask colour
    "MB1042": (0.13, 0.40, 0.19),
    "PSU220": (0.20, 0.33, 0.14),
    "CTL310": (0.10, 0.22, 0.45),
    "IO077": (0.17, 0.17, 0.16),  # matte black mask: dark grey under light
}


def design_board(name: str, footprint: Footprint, comp: ComponentType, rng: np.random.Generator) -> Board:
    """The board around one footprint: mask texture, traces off some pads, vias, a neighbouring part."""
    mask = tuple(float(c) * rng.uniform(0.9, 1.1) for c in BOARD_STYLES[name])
    traces = []
    for pad in footprint.pads:
        if rng.random() < 0.5:
            width = rng.uniform(0.8, 1.3)
            if abs(pad.cx) >= abs(pad.cy):  # pads at the x ends: the trace runs off along x
                side = math.copysign(1.0, pad.cx)
                traces.append(Box(side * (abs(pad.cx) + pad.hw + 22), pad.cy + rng.uniform(-0.4, 0.4) * pad.hh, 22, width))
            else:
                side = math.copysign(1.0, pad.cy)
                traces.append(Box(pad.cx, side * (abs(pad.cy) + pad.hh + 22), width, 22))
    corners = rng.permutation([(-1, -1), (-1, 1), (1, -1), (1, 1)])[: int(rng.integers(0, 3))]
    vias = tuple((float(sx * rng.uniform(21, 27)), float(sy * rng.uniform(21, 27)), float(rng.uniform(1.8, 2.4)))
                 for sx, sy in corners)
    neighbour_pads, neighbour_body = (), None
    if comp.two_terminal and rng.random() < 0.5:
        side = float(rng.choice([-1, 1]))
        pad = footprint.pads[1]
        gap, hh = rng.uniform(3.5, 6.0), 4.5
        y = side * (pad.hh + gap + hh)
        neighbour_pads = (Box(-pad.cx, y, pad.hw, hh), Box(pad.cx, y, pad.hw, hh))
        neighbour_body = Box(0, y + side * 1.0, pad.cx - pad.hw * 0.3, hh)
    neighbour_colour = _BLACK_BODY if rng.random() < 0.5 else (0.68, 0.56, 0.40)
    return Board(
        name=name,
        mask=mask,
        thickness=rng.normal(0, 1, (9, 9)).astype(np.float32),
        grain=rng.normal(0, 1, (64, 64)).astype(np.float32),
        weave=(float(rng.uniform(3.5, 5.0)), float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
        traces=tuple(traces),
        vias=vias,
        neighbour_pads=neighbour_pads,
        neighbour_body=neighbour_body,
        neighbour_colour=neighbour_colour,
    )


def design_scene(comp_name: str, board_name: str, rng: np.random.Generator) -> Scene:
    """A defect-free scene: one board location, its part nominally placed, nominal solder."""
    comp = COMPONENT_TYPES[comp_name]
    footprint, part = comp.build(float(rng.uniform(0.9, 1.1)))
    board = design_board(board_name, footprint, comp, rng)
    # Part colours and marking contrast vary between lots; golden and test share the lot.
    tint = rng.uniform(0.92, 1.08)
    part = Part(part.body, part.height, tuple(min(1.0, c * tint) for c in part.colour), part.cylinder,
                part.terminals, part.marks)
    solder = tuple(float(rng.uniform(0.9, 1.1)) for _ in footprint.pads)
    return Scene(comp, footprint, part, board, int(rng.integers(0, 4)), solder,
                 mark_strength=float(rng.uniform(0.6, 1.0)))
