"""The SMT demo world: assembled boards (chip, MELF, tantalum, SOT23 and SOIC8 parts) under two to
four AOI lights, rendered by ``scene`` with the defects and nuisances of ``defects``.

The default label mix keeps the defects a 64-px model can see (MISSING, SHIFT, SKEW, POLARITY,
EXCESS_SOLDER; BRIDGE and TOMBSTONE as gaps). INSUFFICIENT_SOLDER (a thinner fillet, 2-3 px) and
SURFACE_ANOMALY (a faint stain or scratch) remain renderable but are not planned: measured on the
demo, they stayed below half the PASS scores after 30 CPU epochs and would set FAR@100% recall alone.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from . import defects, scene, sensor
from .render import render_pair
from .world import ComponentInfo, Gap, RenderedRow, World

LIGHTS = ("SolderLight", "UniformLight", "LowAngleLight", "WhiteLight")

GAPS = (
    Gap("label", "BRIDGE", 0.2, "solder bridges appear after a stencil change; the base set predates it"),
    Gap("label", "TOMBSTONE", 0.15, "tombstones come with a new reflow profile; none were collected for the base set"),
    Gap("comp_type_1", "SOT23", 0.15, "a part type introduced after the base set was collected"),
    Gap("nuisance", "second_source", 0.2,
        "an approved alternate part (another body colour and marking) went into production after the base set"),
    Gap("nuisance", "dust", 0.12, "dust and flux specks from a dirtier line"),
)
BASE_SHARES: dict[str, dict[str, float]] = {
    "label": {"MISSING": 1.0, "SHIFT": 1.0, "SKEW": 1.0, "POLARITY": 1.0, "EXCESS_SOLDER": 1.0},
    "comp_type_1": {"CHIP_RES": 0.26, "CHIP_CAP": 0.26, "SOIC8": 0.16, "MELF": 0.14, "TANT_CAP": 0.18},
    "nuisance": {"none": 0.3, "gain_gamma": 0.15, "noise": 0.15, "jpeg": 0.15, "rotation": 0.1, "placement": 0.15},
}
NUISANCE_DESCRIPTIONS = {
    "none": "only the mild background variation every row has",
    "gain_gamma": "per-light gain 0.9-1.1 and gamma 0.9-1.1 drift",
    "noise": "sensor noise sigma 4-9 grey levels",
    "jpeg": "test image saved at JPEG quality 20-40",
    "dust": "1-4 dust or flux specks on the test board",
    "rotation": "0.8-2 degree test image rotation",
    "placement": f"tolerated part placement error up to {defects.PLACEMENT_TOLERANCE_PX} px (of a 64-px crop) / "
                 f"{defects.PLACEMENT_TOLERANCE_DEG} degrees",
    "second_source": "the test part is an approved alternate: another body colour and marking text",
}
DEFECTS_MARKDOWN = f"""\
Applied to the scene (so every light shows them), each with a severity in 0..1 (0: the smallest
deviation the demo calls a defect, clearly beyond the PASS tolerance; 1: gross; px of a 64-px crop):
MISSING (0.2-0.7 of the paste left on the pads), SHIFT ({defects.SHIFT_MIN_PX}-{defects.SHIFT_MAX_PX} px),
SKEW ({defects.SKEW_MIN_DEG:g}-{defects.SKEW_MAX_DEG:g} degrees), TOMBSTONE (30-90 degree lift, two-terminal
parts), POLARITY (180 degrees; severity = marking contrast 0.75-1; MELF, TANT_CAP, SOIC8), BRIDGE
(1.8-3.6 px wide), EXCESS_SOLDER (1.9-2.8x the solder on some terminals). INSUFFICIENT_SOLDER and
SURFACE_ANOMALY can be rendered but are not planned (too subtle for the CPU model at 64 px)."""


def compatible(label: str, comp: str) -> bool:
    return label == defects.PASS_LABEL or defects.compatible(label, scene.COMPONENT_TYPES[comp])


def _floats(values: Any) -> str:
    return ";".join(f"{v:.4f}" for v in values)


def render(plan: Any, config: Any, rng: np.random.Generator, golden_rng: np.random.Generator) -> RenderedRow:
    lights = LIGHTS[: config.lights]
    base = scene.design_scene(plan.comp_type, plan.board, rng)
    nuisance = defects.draw_nuisance(plan.nuisance, len(lights), rng, misregistration_px=config.misregistration_px,
                                     golden_rng=golden_rng)
    golden, test = defects.pass_pair(base, nuisance, rng)
    severity, params = None, {}
    if plan.label != defects.PASS_LABEL:
        severity = float(rng.uniform(0.0, 1.0))
        golden, test, params = defects.apply_defect(golden, test, plan.label, severity, rng)
    rendered = render_pair(golden, test, (nuisance.golden.camera, nuisance.test.camera), config.image_size, lights)
    images = []
    for light_images, capture in zip(rendered, (nuisance.golden, nuisance.test)):
        pixels = sensor.capture(np.stack([light_images[light] for light in lights]), capture.gains, capture.gammas,
                                 capture.noise_sigma, rng, blur_sigma=capture.blur_sigma)
        images.append(dict(zip(lights, pixels)))
    camera = nuisance.test.camera
    truth = {
        "severity": "" if severity is None else round(severity, 4),
        "defect_params": json.dumps(params, sort_keys=True) if params else "",
        "misregistration_px": round(nuisance.misregistration_px, 4),
        "shift_x_px": round(camera.shift_x - nuisance.golden.camera.shift_x, 4),
        "shift_y_px": round(camera.shift_y - nuisance.golden.camera.shift_y, 4),
        "rotation_deg": round(camera.rotation_deg, 4),
        "placement_dx": round(test.dx, 4),
        "placement_dy": round(test.dy, 4),
        "placement_deg": round(test.angle, 4),
        "gains": _floats(nuisance.test.gains),
        "gammas": _floats(nuisance.test.gammas),
        "noise_sigma": round(nuisance.test.noise_sigma, 4),
        "jpeg_quality": nuisance.test.jpeg_quality,
        "specks": len(nuisance.specks),
        "orientation_deg": 90 * base.orientation,
    }
    return RenderedRow(images[0], images[1], nuisance.golden.jpeg_quality, nuisance.test.jpeg_quality, truth)


WORLD = World(
    kind="smt",
    title="assembled SMT boards",
    light_order=LIGHTS,
    default_lights=2,
    components={name: ComponentInfo(t.designator, t.part_type, t.pins) for name, t in scene.COMPONENT_TYPES.items()},
    boards=tuple(scene.BOARD_STYLES),
    gaps=GAPS,
    base_shares=BASE_SHARES,
    nuisance_descriptions=NUISANCE_DESCRIPTIONS,
    defects_markdown=DEFECTS_MARKDOWN,
    compatible=compatible,
    render=render,
)
