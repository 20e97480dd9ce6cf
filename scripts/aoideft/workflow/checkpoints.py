"""Where an iteration's best-validation and latest checkpoints are, whatever produced them.

Three producers name checkpoints: the Phase 1 -> 2 handoff (`baseline/train/handoff.json`), a DEFT
retrain (`iter<N>/train/train_summary.json`, written by the trainer) and Phase 3's selection
(`final_automl/best_rec.json`). Each carries a `checkpoints` block {best_val, latest} whose paths
are absolute or relative to the manifest's directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import fsutil
from ..errors import InputError

KINDS = ("best_val", "latest")


def checkpoint_paths(manifest: str | Path) -> dict[str, Path]:
    manifest = Path(manifest)
    document = fsutil.read_json_input(manifest, what="checkpoint manifest", fix="rerun the step that wrote it.")
    block = document.get("checkpoints")
    if not isinstance(block, dict) or not all(kind in block for kind in KINDS):
        raise InputError(f"{manifest}: no `checkpoints` block with {', '.join(KINDS)}")
    paths = {}
    for kind in KINDS:
        path = Path(block[kind])
        paths[kind] = path if path.is_absolute() else (manifest.parent / path)
        if not paths[kind].is_file():
            raise InputError(f"{manifest}: {kind} checkpoint {paths[kind]} is missing")
    return paths


def relative_block(paths: dict[str, Path], base: Path) -> dict[str, str]:
    """A `checkpoints` block with paths relative to ``base`` (the manifest's directory)."""
    return {kind: os.path.relpath(Path(paths[kind]).resolve(), base.resolve()) for kind in KINDS}
