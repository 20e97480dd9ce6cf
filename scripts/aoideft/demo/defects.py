"""Defects and PASS nuisances of the demo scene.

Defects change the *scene* (part placement, presence, orientation, tombstone lift, solder amounts,
bridges, surface damage), so every light renders them consistently. Each has a severity knob in
0..1: 0 is the smallest deviation the demo calls a defect, clearly beyond what PASS tolerates and
visible at 64 px (INSUFFICIENT_SOLDER and SURFACE_ANOMALY stay subtle: a thinner fillet or a faint
stain, which is why the default demo leaves them out), 1 is gross. PASS variation is what a real
line shows between a golden and a good test image and what makes a template-difference detector
raise false alarms: misregistration and small rotation of the test image, tolerated placement and
solder-volume variation, per-light gain/gamma drift, sensor noise, low-quality JPEG, dust/flux specks
and second-source parts (an approved alternate part whose body colour and marking differ from the
golden's). Every row gets a mild dose of all of them and one
``NUISANCE_MODES`` entry at full strength (also on defect rows, so a nuisance never implies PASS).
Golden misregistration (``draw_nuisance(misregistration_px=...)``) shifts every golden image by up to
that many pixels, with mild gain and blur: the misregistered variant of a workspace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .scene import Blob, Box, Camera, ComponentType, Scene

PASS_LABEL = "PASS"
DEFECT_LABELS = ("MISSING", "SHIFT", "SKEW", "TOMBSTONE", "POLARITY", "BRIDGE", "EXCESS_SOLDER",
                 "INSUFFICIENT_SOLDER", "SURFACE_ANOMALY")
NUISANCE_MODES = ("none", "gain_gamma", "noise", "jpeg", "dust", "rotation", "placement", "second_source")

# PASS tolerances (scene units = px of a 64-px crop). The defects' smallest deviations (severity 0)
# start well beyond them, so every defect is visible at the demo's 64 px.
PLACEMENT_TOLERANCE_PX = 1.0
PLACEMENT_TOLERANCE_DEG = 2.0
SHIFT_MIN_PX, SHIFT_MAX_PX = 4.0, 8.5
SKEW_MIN_DEG, SKEW_MAX_DEG = 12.0, 25.0
GOLDEN_JPEG_QUALITY = 92
TEST_JPEG_QUALITY = 90


def compatible(label: str, comp: ComponentType) -> bool:
    """Whether a label is physical for a component type (tombstones need two terminals, polarity
    errors a polar part)."""
    if label == "TOMBSTONE":
        return comp.two_terminal
    if label == "POLARITY":
        return comp.polar
    return True


# --------------------------------------------------------------------------------------------------
# Defects
# --------------------------------------------------------------------------------------------------

DefectFn = Callable[[Scene, Scene, float, np.random.Generator], tuple[Scene, Scene, dict]]


def _rounded(params: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items()}


def _pick_pads(scene: Scene, rng: np.random.Generator) -> list[int]:
    """Pads a solder defect hits: one or both ends of a two-terminal part, 1-3 leads of an IC."""
    count = len(scene.footprint.pads)
    if scene.comp.two_terminal:
        return sorted(rng.choice(count, size=int(rng.integers(1, 3)), replace=False).tolist())
    return sorted(rng.choice(count, size=int(rng.integers(1, min(3, count) + 1)), replace=False).tolist())


def _with_solder(scene: Scene, pads: list[int], amount: Callable[[float], float]) -> Scene:
    return replace(scene, solder=tuple(amount(a) if i in pads else a for i, a in enumerate(scene.solder)))


def _missing(golden, test, severity, rng):
    leftover = 0.7 - 0.5 * severity  # paste left on the pads: at low severity it mimics terminals
    test = replace(test, present=False, solder=tuple(a * leftover for a in test.solder))
    return golden, test, {"leftover_solder": leftover}


def _shift(golden, test, severity, rng):
    distance = SHIFT_MIN_PX + (SHIFT_MAX_PX - SHIFT_MIN_PX) * severity
    direction = float(rng.choice([0, 90, 180, 270])) if rng.random() < 0.7 else float(rng.uniform(0, 360))
    dx, dy = distance * math.cos(math.radians(direction)), distance * math.sin(math.radians(direction))
    test = replace(test, dx=test.dx + dx, dy=test.dy + dy)
    return golden, test, {"shift_px": distance, "direction_deg": direction}


def _skew(golden, test, severity, rng):
    angle = float(rng.choice([-1, 1])) * (SKEW_MIN_DEG + (SKEW_MAX_DEG - SKEW_MIN_DEG) * severity)
    test = replace(test, angle=test.angle + angle)
    return golden, test, {"skew_deg": angle}


def _tombstone(golden, test, severity, rng):
    lift = 30.0 + 60.0 * severity
    end = int(rng.integers(0, 2))
    return golden, replace(test, lift_deg=lift, lift_terminal=end), {"lift_deg": lift, "lifted_terminal": end}


def _polarity(golden, test, severity, rng):
    # The part is rotated 180 degrees; severity is the contrast of the lot's polarity marking
    # (a faint band or dot is the hard case), so it applies to the golden's part as well.
    strength = 0.75 + 0.25 * severity
    golden = replace(golden, mark_strength=strength)
    test = replace(test, flipped=not test.flipped, mark_strength=strength)
    return golden, test, {"mark_strength": strength}


def _bridge_box(scene: Scene, width: float, rng: np.random.Generator) -> tuple[Box, str]:
    """A solder bridge of ``width`` between two adjacent pads (design frame)."""
    pads = scene.footprint.pads
    if scene.footprint.bridge_pairs:  # neighbouring leads of an IC
        i, j = scene.footprint.bridge_pairs[int(rng.integers(len(scene.footprint.bridge_pairs)))]
        a, b = sorted((pads[i], pads[j]), key=lambda p: p.cx)
        y = a.cy + rng.uniform(-0.5, 0.5) * a.hh
        gap = (b.cx - b.hw) - (a.cx + a.hw)
        return Box((a.cx + b.cx) / 2, y, gap / 2 + 0.8, width / 2), f"pads {i}-{j}"
    board = scene.board
    if board.neighbour_pads:  # a pad of the part to the neighbouring part's pad
        k = int(rng.integers(2))
        own, other = pads[k], board.neighbour_pads[k]
        top, bottom = sorted((own, other), key=lambda p: p.cy)
        gap = (bottom.cy - bottom.hh) - (top.cy + top.hh)
        x = own.cx + rng.uniform(-0.5, 0.5) * own.hw
        return Box(x, (top.cy + top.hh + bottom.cy - bottom.hh) / 2, width / 2, gap / 2 + 0.8), f"pad {k}-neighbour"
    # Along the body side, shorting the part's own two terminals.
    side = float(rng.choice([-1, 1]))
    pad = pads[1]
    y = side * (scene.part.body.hh + width / 2 + 0.6)
    return Box(0.0, y, pad.cx - pad.hw + 1.0, width / 2), "terminal-terminal"


def _bridge(golden, test, severity, rng):
    width = 1.8 + 1.8 * severity
    box, where = _bridge_box(test, width, rng)
    return golden, replace(test, bridges=test.bridges + (box,)), {"width_px": width, "between": where}


def _excess(golden, test, severity, rng):
    amount = 1.9 + 0.9 * severity
    pads = _pick_pads(test, rng)
    return golden, _with_solder(test, pads, lambda a: max(a, amount)), {"amount": amount, "pads": pads}


def _insufficient(golden, test, severity, rng):
    amount = 0.5 - 0.42 * severity
    pads = _pick_pads(test, rng)
    return golden, _with_solder(test, pads, lambda a: min(a, amount)), {"amount": amount, "pads": pads}


def _on_body(scene: Scene, rng: np.random.Generator, reach: float = 0.6) -> tuple[float, float]:
    body = scene.part.body
    return (scene.dx + rng.uniform(-reach, reach) * body.hw, scene.dy + rng.uniform(-reach, reach) * body.hh)


def _surface_anomaly(golden, test, severity, rng):
    kind = str(rng.choice(["scratch", "stain", "foreign"]))
    angle = float(rng.uniform(0, 180))
    if kind == "scratch":  # a scratch across the body: lighter groove
        x, y = _on_body(test, rng)
        grey = 0.45 + 0.3 * severity
        blobs = (Blob(Box(x, y, 3.0 + 6.0 * severity, 0.35 + 0.45 * severity, angle), (grey, grey, grey),
                      0.55 + 0.4 * severity, 0.3, -0.5, round=False, soft=0.3),)
    elif kind == "stain":  # residue or discolouration on the body or the board beside it
        x, y = _on_body(test, rng, reach=1.3)
        radius = 2.5 + 4.0 * severity
        colour = (0.36, 0.26, 0.12) if rng.random() < 0.5 else (0.80, 0.78, 0.70)
        blobs = (Blob(Box(x, y, radius, radius * rng.uniform(0.6, 1.0), angle), colour, 0.3 + 0.45 * severity,
                      None, 0.0, soft=0.8 + 0.3 * radius),)
    else:  # foreign material (fibre, flake): irregular, raised, anywhere around the part
        x, y = _on_body(test, rng, reach=1.6)
        colour = [(0.15, 0.12, 0.10), (0.85, 0.84, 0.80), (0.80, 0.45, 0.20)][int(rng.integers(3))]
        length, width = 1.8 + 3.5 * severity, 0.8 + 1.2 * severity
        second = (x + math.cos(math.radians(angle)) * length * 0.7, y + math.sin(math.radians(angle)) * length * 0.7)
        blobs = (Blob(Box(x, y, length, width, angle), colour, 0.9, 0.1, 0.8 + 1.6 * severity),
                 Blob(Box(*second, width * 1.1, width * 0.8, angle + 60), colour, 0.9, 0.1, 0.8 + 1.6 * severity))
    return golden, replace(test, blobs=test.blobs + blobs), {"kind": kind, "x": x, "y": y}


DEFECTS: dict[str, DefectFn] = {
    "MISSING": _missing,
    "SHIFT": _shift,
    "SKEW": _skew,
    "TOMBSTONE": _tombstone,
    "POLARITY": _polarity,
    "BRIDGE": _bridge,
    "EXCESS_SOLDER": _excess,
    "INSUFFICIENT_SOLDER": _insufficient,
    "SURFACE_ANOMALY": _surface_anomaly,
}


def apply_defect(golden: Scene, test: Scene, label: str, severity: float,
                 rng: np.random.Generator) -> tuple[Scene, Scene, dict]:
    """Apply ``label`` at ``severity`` (0..1); returns (golden, test, defect parameters)."""
    if label not in DEFECTS:
        raise ValueError(f"unknown defect label {label!r}; expected one of {', '.join(DEFECT_LABELS)}")
    if not compatible(label, test.comp):
        raise ValueError(f"{label} is not physical for a {test.comp.name}")
    golden, test, params = DEFECTS[label](golden, test, float(np.clip(severity, 0.0, 1.0)), rng)
    return golden, test, _rounded(params)


# --------------------------------------------------------------------------------------------------
# PASS nuisances
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    """Image-space side of taking one image: camera pose and per-light sensor response."""

    camera: Camera
    gains: tuple[float, ...]  # per light
    gammas: tuple[float, ...]
    noise_sigma: float  # grey levels
    jpeg_quality: int
    blur_sigma: float = 0.0  # output pixels (defocus)


@dataclass(frozen=True)
class Nuisance:
    mode: str
    golden: Capture
    test: Capture
    golden_placement: tuple[float, float, float]  # dx, dy, angle: both boards place within tolerance
    test_placement: tuple[float, float, float]
    solder_jitter: tuple[float, float]  # test solder amount factor range (a different board's paste)
    specks: tuple[Blob, ...]
    second_source: bool = False  # the test board carries an approved alternate part

    @property
    def misregistration_px(self) -> float:
        """Golden/test camera offset in output pixels."""
        return math.hypot(self.test.camera.shift_x - self.golden.camera.shift_x,
                          self.test.camera.shift_y - self.golden.camera.shift_y)


def _polar(rng: np.random.Generator, low: float, high: float) -> tuple[float, float]:
    radius, theta = rng.uniform(low, high), rng.uniform(0, 2 * math.pi)
    return radius * math.cos(theta), radius * math.sin(theta)


def _specks(rng: np.random.Generator) -> tuple[Blob, ...]:
    """Dust (small, light, sharp) and flux residue (translucent amber, glossy) anywhere in view."""
    specks = []
    for _ in range(int(rng.integers(1, 5))):
        x, y = rng.uniform(-27, 27, size=2)
        if rng.random() < 0.7:
            r = rng.uniform(0.6, 1.6)
            grey = rng.uniform(0.72, 0.9)
            specks.append(Blob(Box(x, y, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, 180)), (grey, grey, grey * 0.97),
                               rng.uniform(0.5, 0.9), 0.1, rng.uniform(0.3, 0.7), soft=0.3))
        else:
            r = rng.uniform(1.5, 3.2)
            specks.append(Blob(Box(x, y, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, 180)), (0.78, 0.62, 0.32),
                               rng.uniform(0.25, 0.45), 0.7, 0.15, soft=0.8))
    return tuple(specks)


def draw_nuisance(mode: str, num_lights: int, rng: np.random.Generator, misregistration_px: float = 0.0,
                  golden_rng: np.random.Generator | None = None) -> Nuisance:
    """Golden/test capture and placement variation of a row whose strong nuisance is ``mode``; with
    ``misregistration_px`` > 0 the golden is also shifted by up to that many pixels (plus mild gain
    and blur), drawn from ``golden_rng`` so every other draw matches the aligned variant's."""
    if mode not in NUISANCE_MODES:
        raise ValueError(f"unknown nuisance mode {mode!r}; expected one of {', '.join(NUISANCE_MODES)}")
    shift = _polar(rng, 0.0, 0.6)
    rotation = rng.uniform(-0.3, 0.3)
    gains = rng.uniform(0.97, 1.03, num_lights)
    gammas = rng.uniform(0.97, 1.03, num_lights)
    noise = rng.uniform(1.0, 2.0)
    quality = TEST_JPEG_QUALITY
    test_placement = (*_polar(rng, 0.0, 0.45), rng.uniform(-0.6, 0.6))
    golden_placement = (*_polar(rng, 0.0, 0.35), rng.uniform(-0.5, 0.5))
    golden_noise = rng.uniform(0.8, 1.5)
    specks: tuple[Blob, ...] = ()
    if mode == "gain_gamma":
        gains = rng.uniform(0.9, 1.1, num_lights)
        gammas = rng.uniform(0.9, 1.1, num_lights)
    elif mode == "noise":
        noise = rng.uniform(4.0, 9.0)
    elif mode == "jpeg":
        quality = int(rng.integers(20, 41))
    elif mode == "dust":
        specks = _specks(rng)
    elif mode == "rotation":
        rotation = float(rng.choice([-1, 1])) * rng.uniform(0.8, 2.0)
    elif mode == "placement":
        test_placement = (*_polar(rng, 0.8, PLACEMENT_TOLERANCE_PX),
                          float(rng.choice([-1, 1])) * rng.uniform(0.7, PLACEMENT_TOLERANCE_DEG))
    ones = (1.0,) * num_lights
    golden = Capture(Camera(), ones, ones, float(golden_noise), GOLDEN_JPEG_QUALITY)
    if misregistration_px > 0:
        golden_rng = golden_rng or rng
        offset = _polar(golden_rng, 0.0, misregistration_px)
        golden = replace(golden, camera=Camera(float(offset[0]), float(offset[1])),
                         gains=tuple(map(float, golden_rng.uniform(0.95, 1.05, num_lights))),
                         blur_sigma=float(golden_rng.uniform(0.2, 0.7)))
    return Nuisance(
        mode=mode,
        golden=golden,
        test=Capture(Camera(float(shift[0]), float(shift[1]), float(rotation)), tuple(map(float, gains)),
                     tuple(map(float, gammas)), float(noise), quality),
        golden_placement=tuple(map(float, golden_placement)),
        test_placement=tuple(map(float, test_placement)),
        solder_jitter=(0.85, 1.15),
        specks=specks,
        second_source=mode == "second_source",
    )


# Body colours of an approved alternate part: another supplier's moulding compound or ceramic.
_SECOND_SOURCE_BODIES: tuple[tuple[float, float, float], ...] = (
    (0.30, 0.30, 0.32), (0.55, 0.42, 0.28), (0.20, 0.26, 0.38), (0.62, 0.60, 0.55))


def second_source(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same footprint with an alternate supplier's part: another body colour and its own marking
    text (the polarity marking stays where the footprint needs it)."""
    part = scene.part
    colours = [c for c in _SECOND_SOURCE_BODIES if max(abs(a - b) for a, b in zip(c, part.colour)) > 0.15]
    colour = colours[int(rng.integers(len(colours)))]
    marks = tuple(mark if mark.polarity else replace(
        mark, boxes=tuple(replace(b, cx=b.cx + float(rng.uniform(-1.5, 1.5)), hw=b.hw * float(rng.uniform(0.6, 1.4)))
                          for b in mark.boxes), colour=tuple(1.0 - c * 0.3 for c in colour))
                  for mark in part.marks)
    return replace(scene, part=replace(part, colour=colour, marks=marks))


def pass_pair(scene: Scene, nuisance: Nuisance, rng: np.random.Generator) -> tuple[Scene, Scene]:
    """Golden and test scenes of one location on two good boards: placement within tolerance,
    the test board's own solder volumes, and the nuisance's specks on the test board."""
    low, high = nuisance.solder_jitter
    golden = replace(scene, dx=nuisance.golden_placement[0], dy=nuisance.golden_placement[1],
                     angle=nuisance.golden_placement[2])
    test = replace(scene, dx=nuisance.test_placement[0], dy=nuisance.test_placement[1],
                   angle=nuisance.test_placement[2],
                   solder=tuple(a * float(rng.uniform(low, high)) for a in scene.solder),
                   blobs=scene.blobs + nuisance.specks)
    if nuisance.second_source:
        test = second_source(test, rng)
    return golden, test
