"""Rules demo_workspace (the embedded demo, when configured) and workspace_ready (validation, image-root links)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from .. import fsutil
from ..errors import InputError
from . import inputs
from .settings import RunSettings


def generate_demo(settings: RunSettings) -> None:
    """Rule demo_workspace: generate the embedded demo into the workspace path (the rule exists only
    while that path does not; Snakemake has made only the empty folders of its outputs)."""
    demo = settings.config["demo"]
    print(f"generating the embedded demo workspace ({demo['kind']}, {demo['preset']}, seed {demo['seed']}"
          + (f", goldens misregistered by up to {demo['misregistration_px']:g} px" if demo["misregistration_px"] else "")
          + f") into {settings.workspace}", flush=True)
    # A fresh interpreter: the generator's worker processes must not inherit (fork) or re-run
    # (spawn) a Snakemake script process. It imports this checkout's package, as the rule script does
    # (Snakemake puts scripts/ on the script's path, not on a child's: under --sdm conda the package
    # is not installed in the rule's environment).
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    subprocess.run(
        [sys.executable, "-m", "aoideft.cli", "demo", "--out", str(settings.workspace), "--kind", demo["kind"],
         "--preset", demo["preset"], "--seed", str(demo["seed"]), "--misregistration-px", str(demo["misregistration_px"])],
        check=True, stdout=sys.stdout, stderr=sys.stderr, env=env,
    )


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
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "lights": list(report.lights),
            "image_ext": report.image_ext,
            "datasets": report.dataset_table(),
            "pool": report.pool.to_json(),  # mining skips pool.excluded (deft_jobs)
            "notes": report.notes,
            "spec_notes": report.spec_notes,
            "fingerprint": inputs.fingerprint(settings),
        },
    )
