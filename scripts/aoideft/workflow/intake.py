"""Rule workspace_ready: demo generation (when configured), validation, image-root links."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import fsutil
from ..errors import InputError
from . import inputs
from .settings import RunSettings


def ensure_demo_workspace(settings: RunSettings) -> bool:
    """Generate the embedded demo into the workspace path if it is absent; True if generated."""
    if settings.workspace.exists():
        return False
    demo = settings.config["demo"]
    if not demo["generate"]:
        raise InputError(
            f"workspace {settings.workspace} does not exist and demo.generate is false: point "
            "`workspace` at your TAO AOI workspace"
        )
    print(f"generating the embedded demo workspace ({demo['kind']}, {demo['preset']}, seed {demo['seed']}"
          + (f", goldens misregistered by up to {demo['misregistration_px']:g} px" if demo["misregistration_px"] else "")
          + f") into {settings.workspace}", flush=True)
    # A fresh interpreter: the generator's worker processes must not inherit (fork) or re-run
    # (spawn) a Snakemake script process.
    subprocess.run(
        [sys.executable, "-m", "aoideft.cli", "demo", "--out", str(settings.workspace), "--kind", demo["kind"],
         "--preset", demo["preset"], "--seed", str(demo["seed"]), "--misregistration-px", str(demo["misregistration_px"])],
        check=True, stdout=sys.stdout, stderr=sys.stderr,
    )
    return True


def link_image_roots(settings: RunSettings) -> None:
    """images/workspace and images/pool point at the user's image roots, so combined CSVs can
    mix base, mined and synthetic rows under one images_dir without copying images."""
    root = settings.run_images
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("workspace", settings.images_dir), ("pool", settings.pool_images_dir)):
        link = root / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            raise InputError(f"{link} exists and is not a link; remove it or use a new run_dir")
        tmp = root / f".{name}.tmp-link"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)


def workspace_ready(settings: RunSettings, record_path: Path) -> None:
    generated = ensure_demo_workspace(settings)
    report = inputs.check_workspace(settings)
    link_image_roots(settings)
    for note in report.spec_notes:
        print(f"spec note: {note}")
    for note in report.notes:
        print(f"note: {note}")
    fsutil.write_json(
        record_path,
        {
            "workspace": str(settings.workspace),
            "generated_demo": generated,
            "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "lights": list(report.lights),
            "image_ext": report.image_ext,
            "datasets": report.dataset_table(),
            "pool": report.pool.to_json(),  # mining skips pool.excluded (deft_jobs)
            "notes": report.notes,
            "spec_notes": report.spec_notes,
            "fingerprint": inputs.fingerprint(settings),
        },
    )
